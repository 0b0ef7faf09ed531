"""Discovery metrics as Matbench Discovery defines them (Riebesell et al., arXiv:2308.14920).

A material is *stable* when its energy above the hull is at most ``threshold`` (0 eV/atom by default),
both for the DFT truth and for the model. A missing prediction counts as "predicted unstable"; the
regression errors (MAE, RMSE) use only rows with both values. DAF (discovery acceleration factor) is
precision / prevalence: how many times more stable materials the model's picks hold than random picks.
"""

from __future__ import annotations

import numpy as np


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("nan")


def discovery_metrics(e_hull_true: np.ndarray, e_hull_pred: np.ndarray, threshold: float = 0.0) -> dict[str, float]:
    """``n, tp, fp, tn, fn, prevalence, precision, recall, f1, accuracy, daf, mae, rmse`` (energies in eV/atom)."""
    true = np.asarray(e_hull_true, dtype=np.float64)
    pred = np.asarray(e_hull_pred, dtype=np.float64)
    if true.shape != pred.shape:
        raise ValueError(f"{len(true)} true E_hull values but {len(pred)} predictions")
    if np.isnan(true).any():
        raise ValueError(f"{int(np.isnan(true).sum())} true E_hull values are missing; drop those rows first")
    actual = true <= threshold
    predicted = np.nan_to_num(pred, nan=np.inf) <= threshold
    tp, fp = int(np.sum(actual & predicted)), int(np.sum(~actual & predicted))
    fn, tn = int(np.sum(actual & ~predicted)), int(np.sum(~actual & ~predicted))
    n = len(true)
    precision, recall, prevalence = _ratio(tp, tp + fp), _ratio(tp, tp + fn), _ratio(tp + fn, n)
    errors = (pred - true)[np.isfinite(pred)]
    return {
        "n": n, "tp": tp, "fp": fp, "tn": tn, "fn": fn,
        "prevalence": prevalence,
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
        "accuracy": _ratio(tp + tn, n),
        "daf": _ratio(precision, prevalence),
        "mae": float(np.mean(np.abs(errors))) if len(errors) else float("nan"),
        "rmse": float(np.sqrt(np.mean(errors**2))) if len(errors) else float("nan"),
    }
