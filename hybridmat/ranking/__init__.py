"""Ranking predictions: DuckDB queries in target names, Pareto fronts, E_hull against known phases,
discovery metrics and the ``hybridmat rank`` report."""
