"""Discovery metrics on a hand-made case with known counts."""

from __future__ import annotations

import numpy as np
import pytest

from hybridmat.ranking.metrics import discovery_metrics

TRUE = np.array([-0.1, -0.05, 0.0, 0.02, 0.1, 0.2, 0.3, -0.2])
PRED = np.array([-0.2, 0.05, -0.01, -0.03, 0.2, 0.1, np.nan, 0.1])


def test_counts_and_ratios_at_zero() -> None:
    m = discovery_metrics(TRUE, PRED)
    # true stable: 0, 1, 2, 7; predicted stable: 0, 2, 3 (the NaN counts as predicted unstable)
    assert (m["n"], m["tp"], m["fp"], m["tn"], m["fn"]) == (8, 2, 1, 3, 2)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(0.5)
    assert m["prevalence"] == pytest.approx(0.5)
    assert m["daf"] == pytest.approx(4 / 3)
    assert m["f1"] == pytest.approx(4 / 7)
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["mae"] == pytest.approx(0.76 / 7)  # over the 7 rows with a prediction


def test_threshold_moves_both_sides() -> None:
    m = discovery_metrics(TRUE, PRED, threshold=0.05)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (4, 0, 3, 1)
    assert m["daf"] == pytest.approx(1.0 / (5 / 8))


def test_no_predicted_stable_gives_nan_precision() -> None:
    m = discovery_metrics(np.array([-1.0, 1.0]), np.array([1.0, 1.0]))
    assert np.isnan(m["precision"]) and np.isnan(m["daf"]) and m["recall"] == 0.0
