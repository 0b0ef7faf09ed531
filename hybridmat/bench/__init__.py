"""Benchmarks that print tables measured in the same run (``hybridmat bench ...``)."""
