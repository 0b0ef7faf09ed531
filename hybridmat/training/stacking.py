"""Per-target member weights for an ensemble of different models, fitted on validation predictions.

Seeds of one architecture are exchangeable and are averaged equally (a deep ensemble); members of different
architectures are not: an under-trained ALIGNN member pulls the equal-weight mean of a band gap away from two
better early-fusion members. Stacking (Wolpert 1992; Breiman 1996) replaces the equal weights by a convex
combination fitted on held-out predictions. The weights minimise the validation MAE, the metric reported, which is
a linear programme: minimise ``Σ e_i`` subject to ``-e_i <= y_i - Σ_k w_k p_ki <= e_i``, ``w >= 0``,
``Σ w = 1``. A member's own weights ``e_k`` are feasible, so on the fitting rows the stacked mean is never worse
than the best member or the equal-weight mean. With K - 1 free weights per target on thousands of validation rows
the fit does not overfit noticeably; export measures it on test.

The spread of a weighted ensemble is the weighted standard deviation about its weighted mean, so a member with
little weight adds little to the uncertainty, as it adds little to the prediction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

METHOD = "convex member weights minimising the validation MAE per target (linear programme, HiGHS)"


def fit_member_weights(predictions: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(K,)`` non-negative weights summing to 1 that minimise ``mean |y - w @ predictions|`` over the labelled
    rows (``predictions``: ``(K, n)``, ``y``: ``(n,)``)."""
    predictions, y = np.asarray(predictions, dtype=np.float64), np.asarray(y, dtype=np.float64)
    known = np.isfinite(y) & np.isfinite(predictions).all(axis=0)
    p, y = predictions[:, known], y[known]
    k, n = p.shape
    if n == 0:
        raise ValueError("fitting member weights needs labelled rows")
    slack = sparse.identity(n, format="csr")
    upper = sparse.vstack([sparse.hstack([p.T, -slack]), sparse.hstack([-p.T, -slack])], format="csr")
    result = linprog(np.r_[np.zeros(k), np.ones(n)], A_ub=upper, b_ub=np.r_[y, -y],
                     A_eq=np.r_[np.ones(k), np.zeros(n)][None, :], b_eq=[1.0], bounds=(0, None), method="highs")
    if not result.success:
        raise RuntimeError(f"fitting member weights failed: {result.message}")
    weights = np.clip(result.x[:k], 0.0, None)
    return weights / weights.sum()


def combine(predictions: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, std)``, each ``(n, T)`` float64, of member predictions ``(K, n, T)`` under ``(K, T)`` weights
    (None: equal). The std is the weighted population spread about the weighted mean (ddof=0; 0 for one member)."""
    predictions = np.asarray(predictions, dtype=np.float64)
    if weights is None:
        return predictions.mean(axis=0), predictions.std(axis=0)
    w = np.asarray(weights, dtype=np.float64)[:, None, :]
    mean = (w * predictions).sum(axis=0)
    return mean, np.sqrt((w * (predictions - mean) ** 2).sum(axis=0))


@dataclass(frozen=True)
class MemberWeights:
    """Each target's member weights (in member order), with what they were fitted on."""

    weights: Mapping[str, tuple[float, ...]]
    fitted_on: str
    method: str = METHOD

    def matrix(self, targets: Sequence[str], n_members: int) -> np.ndarray:
        """``(K, T)`` weights in ``targets``' order; refuses weights for another number of members or targets."""
        missing = [t for t in targets if t not in self.weights]
        if missing:
            raise ValueError(f"the member weights have no {missing}; weighted: {sorted(self.weights)}")
        matrix = np.array([self.weights[t] for t in targets], dtype=np.float64).T
        if matrix.shape[0] != n_members:
            raise ValueError(f"the member weights are for {matrix.shape[0]} members, the ensemble has {n_members}")
        return matrix

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "fitted_on": self.fitted_on,
                "weights": {t: list(w) for t, w in self.weights.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MemberWeights:
        return cls({str(t): tuple(map(float, w)) for t, w in data["weights"].items()}, str(data["fitted_on"]),
                   str(data["method"]))

    @classmethod
    def fit(cls, predictions: np.ndarray, y: np.ndarray, targets: Sequence[str], fitted_on: str) -> MemberWeights:
        """Weights per target from member predictions ``(K, n, T)`` and labels ``(n, T)``."""
        return cls({t: tuple(fit_member_weights(predictions[:, :, i], y[:, i]).tolist())
                    for i, t in enumerate(targets)}, fitted_on)
