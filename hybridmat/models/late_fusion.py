"""Late fusion of a composition model (random forest) and a graph model, fitted on VALIDATION predictions.

Both combiners take the two parents' predictions, not features, so they are fitted after the parents
are trained. They must be fitted on held-out (validation) predictions: a random forest's predictions on
its own training rows are close to the labels (each tree has seen most rows), so an α chosen there
over-trusts the forest.

* ``alpha``: ``ŷ = α·ŷ_rf + (1 − α)·ŷ_gnn`` per target, α on a grid over [0, 1] minimising validation MAE,
  or a given ``fixed_alpha`` (e.g. one chosen by ``hybridmat tune``) for every target.
* ``stacking``: ``ŷ = w_0 + w_1·ŷ_rf + w_2·ŷ_gnn`` per target, least squares on validation predictions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ALPHA_GRID = np.linspace(0.0, 1.0, 101)


@dataclass
class LateFusion:
    """``method`` "alpha" or "stacking"; ``fit`` on validation predictions, then ``predict``."""

    method: str = "alpha"
    alpha: np.ndarray = field(default_factory=lambda: np.empty(0))
    weights: np.ndarray = field(default_factory=lambda: np.empty((0, 3)))
    #: α used for every target instead of the grid search (``fit`` still fits the stacking weights).
    fixed_alpha: float | None = None

    def __post_init__(self) -> None:
        if self.method not in ("alpha", "stacking"):
            raise ValueError(f"late fusion method must be 'alpha' or 'stacking', got {self.method!r}")
        if self.fixed_alpha is not None and not 0.0 <= self.fixed_alpha <= 1.0:
            raise ValueError(f"late fusion alpha must be in [0, 1], got {self.fixed_alpha}")

    def fit(self, rf_val: np.ndarray, gnn_val: np.ndarray, y_val: np.ndarray) -> LateFusion:
        """Fit per target on ``(n, T)`` validation predictions of both parents and labels (NaN = missing)."""
        rf_val, gnn_val, y_val = (np.asarray(a, dtype=np.float64).reshape(len(a), -1) for a in (rf_val, gnn_val, y_val))
        alphas, weights = [], []
        for t in range(y_val.shape[1]):
            mask = np.isfinite(y_val[:, t])
            rf, gnn, y = rf_val[mask, t], gnn_val[mask, t], y_val[mask, t]
            if self.fixed_alpha is None:
                errors = [np.mean(np.abs(a * rf + (1 - a) * gnn - y)) for a in ALPHA_GRID]
                alphas.append(float(ALPHA_GRID[int(np.argmin(errors))]))
            else:
                alphas.append(float(self.fixed_alpha))
            design = np.column_stack([np.ones_like(rf), rf, gnn])
            weights.append(np.linalg.lstsq(design, y, rcond=None)[0])
        self.alpha, self.weights = np.asarray(alphas), np.asarray(weights)
        return self

    def predict(self, rf_pred: np.ndarray, gnn_pred: np.ndarray) -> np.ndarray:
        """Fused ``(n, T)`` predictions."""
        if self.alpha.size == 0:
            raise RuntimeError("LateFusion.predict before fit: fit on validation predictions first")
        rf_pred = np.asarray(rf_pred, dtype=np.float64).reshape(len(rf_pred), -1)
        gnn_pred = np.asarray(gnn_pred, dtype=np.float64).reshape(len(gnn_pred), -1)
        if self.method == "alpha":
            return self.alpha * rf_pred + (1 - self.alpha) * gnn_pred
        return self.weights[:, 0] + self.weights[:, 1] * rf_pred + self.weights[:, 2] * gnn_pred

    def as_dict(self) -> dict[str, object]:
        """Plain form for checkpoints and reports."""
        return {"method": self.method, "alpha": self.alpha.tolist(), "weights": self.weights.tolist(),
                "fixed_alpha": self.fixed_alpha}
