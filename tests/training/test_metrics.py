"""MAE, RMSE and R² per target with missing labels agree with scikit-learn on the labelled rows."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from hybridmat.training.metrics import mae, r2, regression_metrics, rmse


def test_agrees_with_scikit_learn_on_labelled_rows() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=(50, 3))
    pred = y + rng.normal(scale=0.3, size=y.shape)
    y[rng.random(y.shape) < 0.2] = np.nan
    for t in range(3):
        keep = ~np.isnan(y[:, t])
        assert mae(y, pred)[t] == pytest.approx(mean_absolute_error(y[keep, t], pred[keep, t]), rel=1e-12)
        expected_rmse = np.sqrt(mean_squared_error(y[keep, t], pred[keep, t]))
        assert rmse(y, pred)[t] == pytest.approx(expected_rmse, rel=1e-12)
        assert r2(y, pred)[t] == pytest.approx(r2_score(y[keep, t], pred[keep, t]), rel=1e-12)


def test_edge_cases() -> None:
    y = np.array([[2.0, np.nan], [2.0, np.nan]])
    assert r2(y, np.array([[2.0, 0.0], [2.0, 0.0]]))[0] == r2_score([2.0, 2.0], [2.0, 2.0]) == 1.0
    assert r2(y, np.array([[1.0, 0.0], [2.0, 0.0]]))[0] == r2_score([2.0, 2.0], [1.0, 2.0]) == 0.0
    assert np.isnan(mae(y, np.zeros((2, 2)))[1]) and np.isnan(r2(y, np.zeros((2, 2)))[1])
    assert mae(np.array([1.0, 3.0]), np.array([2.0, 2.0])).tolist() == [1.0]  # 1-D input is one target
    with pytest.raises(ValueError, match="shapes"):
        mae(np.zeros((3, 2)), np.zeros((3, 1)))


def test_regression_metrics_dict() -> None:
    report = regression_metrics(np.array([[1.0, np.nan], [3.0, 1.0]]), np.array([[1.0, 0.0], [2.0, 1.5]]),
                                ["e_form", "band_gap"])
    assert report["e_form"] == {"mae": 0.5, "rmse": pytest.approx(np.sqrt(0.5)), "r2": 0.5, "n": 2}
    assert report["band_gap"]["n"] == 1 and report["band_gap"]["mae"] == 0.5


def test_selection_mae_is_scale_free_for_several_targets() -> None:
    from hybridmat.training.metrics import selection_mae

    assert selection_mae(np.array([0.08]), np.array([1.1])) == pytest.approx(0.08)  # one target: the MAE itself
    # e_form 0.1 eV/atom (σ 1) and band gap 0.5 eV (σ 2): 0.1 and 0.25 in units of σ, mean 0.175
    assert selection_mae(np.array([0.1, 0.5]), np.array([1.0, 2.0])) == pytest.approx(0.175)
    assert selection_mae(np.array([0.1, np.nan]), np.array([1.0, 2.0])) == pytest.approx(0.1)
