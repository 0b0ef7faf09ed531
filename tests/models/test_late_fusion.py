"""Late fusion: α and stacking weights come from validation predictions, never training ones."""

from __future__ import annotations

import numpy as np
import pytest

from hybridmat.models.late_fusion import LateFusion


def _case(seed: int = 0):
    """Training rows where the forest looks perfect (it memorised them), validation rows where it is poor."""
    rng = np.random.default_rng(seed)
    y_train, y_val = rng.normal(size=(200, 1)), rng.normal(size=(200, 1))
    rf_train = y_train.copy()  # overfit: exact on its own training rows
    gnn_train = y_train + rng.normal(scale=0.3, size=y_train.shape)
    rf_val = y_val + rng.normal(scale=1.0, size=y_val.shape)  # poor on unseen rows
    gnn_val = y_val + rng.normal(scale=0.1, size=y_val.shape)
    return (rf_train, gnn_train, y_train), (rf_val, gnn_val, y_val)


def test_alpha_fitted_on_validation_disagrees_with_training_choice() -> None:
    train, val = _case()
    on_train = LateFusion("alpha").fit(*train).alpha[0]
    on_val = LateFusion("alpha").fit(*val).alpha[0]
    assert on_train == 1.0  # training predictions would pick the memorising forest alone
    assert on_val < 0.2  # validation shows the graph model is the better parent
    fused = LateFusion("alpha").fit(*val)
    rf_val, gnn_val, y_val = val
    mae = lambda p: float(np.mean(np.abs(p - y_val)))  # noqa: E731
    assert mae(fused.predict(rf_val, gnn_val)) <= min(mae(rf_val), mae(gnn_val)) + 1e-12


def test_stacking_weights_and_missing_labels() -> None:
    _, (rf_val, gnn_val, y_val) = _case(1)
    y = np.column_stack([y_val[:, 0], y_val[:, 0]])
    y[::2, 1] = np.nan  # second target half missing
    both = np.column_stack([rf_val[:, 0], rf_val[:, 0]]), np.column_stack([gnn_val[:, 0], gnn_val[:, 0]])
    model = LateFusion("stacking").fit(*both, y)
    assert model.weights.shape == (2, 3)
    assert np.all(np.isfinite(model.weights))
    assert model.weights[0, 2] > model.weights[0, 1]  # trusts the better parent more
    assert model.predict(*both).shape == (200, 2)


def test_unknown_method_and_predict_before_fit() -> None:
    with pytest.raises(ValueError, match="alpha"):
        LateFusion("median")
    with pytest.raises(RuntimeError, match="validation"):
        LateFusion().predict(np.zeros((2, 1)), np.zeros((2, 1)))


def test_fixed_alpha_is_kept_and_stacking_still_fitted() -> None:
    _, (rf_val, gnn_val, y_val) = _case()
    fixed = LateFusion("alpha", fixed_alpha=0.7).fit(rf_val, gnn_val, y_val)
    assert fixed.alpha.tolist() == [0.7]  # the grid search would pick < 0.2 here
    np.testing.assert_allclose(fixed.predict(rf_val, gnn_val), 0.7 * rf_val + 0.3 * gnn_val)
    assert fixed.as_dict()["fixed_alpha"] == 0.7
    stacked = LateFusion("stacking", fixed_alpha=0.7).fit(rf_val, gnn_val, y_val)
    np.testing.assert_allclose(stacked.weights, LateFusion("stacking").fit(rf_val, gnn_val, y_val).weights)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        LateFusion("alpha", fixed_alpha=1.5)
