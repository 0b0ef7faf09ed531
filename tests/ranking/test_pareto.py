"""The two-objective Pareto front against its definition."""

from __future__ import annotations

import numpy as np
import pytest

from hybridmat.ranking.pareto import pareto_front, parse_objectives


def _brute_force(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """O(n^2): dominated when another row is <= in both and < in one (both minimised)."""
    front = np.isfinite(a) & np.isfinite(b)
    for i in np.flatnonzero(front):
        dominated = (a <= a[i]) & (b <= b[i]) & ((a < a[i]) | (b < b[i]))
        front[i] = not dominated.any()
    return front


def test_hand_made_front_min_max() -> None:
    # e_form (min), band_gap (max)
    e_form = np.array([-1.0, -0.5, -2.0, -1.0, 0.0, -2.0, np.nan, -1.5])
    band_gap = np.array([2.0, 3.0, 0.5, 1.0, 3.0, 0.5, 9.0, 1.5])
    front = pareto_front(e_form, band_gap, ("min", "max"))
    # -2.0/0.5 twice (equal, neither dominates), -1.5/1.5, -1.0/2.0, -0.5/3.0; 0.0/3.0 loses to -0.5/3.0
    assert np.flatnonzero(front).tolist() == [0, 1, 2, 5, 7]


def test_matches_the_definition_on_random_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.integers(0, 6, 40).astype(float), rng.integers(0, 6, 40).astype(float)
        assert (pareto_front(a, b) == _brute_force(a, b)).all()
        assert (pareto_front(a, b, ("max", "min")) == _brute_force(-a, b)).all()


def test_objectives_are_parsed_and_checked() -> None:
    assert parse_objectives("e_form:min, band_gap:max") == [("e_form", "min"), ("band_gap", "max")]
    with pytest.raises(ValueError, match="exactly two"):
        parse_objectives("e_form:min")
    with pytest.raises(ValueError, match="NAME:min or NAME:max"):
        parse_objectives("e_form:low,band_gap:max")
