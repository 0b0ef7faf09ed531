"""Ray layer: thin wrappers that run the same pure functions as the single-process paths in actors."""
