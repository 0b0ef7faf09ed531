"""Featurizers (pure functions of a Structure/Composition) and the Parquet feature store."""
