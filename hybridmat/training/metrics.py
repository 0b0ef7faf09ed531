"""Regression metrics per target, ignoring missing labels (NaN in ``y_true``).

Each function takes ``(n, T)`` (or ``(n,)``) arrays and returns a ``(T,)`` float64 array; a target with
no label gives NaN. Values agree with scikit-learn's ``mean_absolute_error``, ``root_mean_squared_error``
and ``r2_score`` on the labelled rows (including its ``force_finite`` convention for constant labels).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _columns(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both arrays as float64 ``(n, T)`` and the mask of labelled entries."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    y_true = y_true.reshape(len(y_true), -1)
    y_pred = y_pred.reshape(len(y_pred), -1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"labels {y_true.shape} and predictions {y_pred.shape} have different shapes")
    return y_true, y_pred, ~np.isnan(y_true)


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    count = mask.sum(axis=0)
    total = np.where(mask, values, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def selection_mae(per_target: np.ndarray, scale: np.ndarray) -> float:
    """The one number validation selects on: the MAE for one target; for several, the mean of each
    target's MAE divided by its training-label standard deviation (``scale``), so that no target wins
    by its units (a band gap in eV would otherwise outweigh a formation energy in eV/atom)."""
    per_target = np.asarray(per_target, dtype=np.float64)
    if per_target.size == 1:
        return float(per_target[0])
    return float(np.nanmean(per_target / np.asarray(scale, dtype=np.float64)))


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Mean absolute error per target over the labelled rows."""
    y_true, y_pred, mask = _columns(y_true, y_pred)
    return _masked_mean(np.abs(y_pred - np.nan_to_num(y_true)), mask)


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Root mean squared error per target over the labelled rows."""
    y_true, y_pred, mask = _columns(y_true, y_pred)
    return np.sqrt(_masked_mean((y_pred - np.nan_to_num(y_true)) ** 2, mask))


def r2(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Coefficient of determination per target; constant labels give 1.0 if predicted exactly, else 0.0."""
    y_true, y_pred, mask = _columns(y_true, y_pred)
    labels = np.nan_to_num(y_true)
    residual = np.where(mask, (labels - y_pred) ** 2, 0.0).sum(axis=0)
    centred = labels - _masked_mean(labels, mask)
    spread = np.where(mask, centred**2, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(spread > 0, 1.0 - residual / np.where(spread > 0, spread, 1.0),
                         np.where(residual == 0, 1.0, 0.0))
    return np.where(mask.sum(axis=0) > 0, score, np.nan)


def regression_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, target_names: Sequence[str]
) -> dict[str, dict[str, float]]:
    """``{target: {"mae": ..., "rmse": ..., "r2": ..., "n": labelled rows}}`` as plain floats."""
    columns = {"mae": mae(y_true, y_pred), "rmse": rmse(y_true, y_pred), "r2": r2(y_true, y_pred)}
    counts = (~np.isnan(np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1))).sum(axis=0)
    return {
        name: {**{metric: float(values[t]) for metric, values in columns.items()}, "n": int(counts[t])}
        for t, name in enumerate(target_names)
    }
