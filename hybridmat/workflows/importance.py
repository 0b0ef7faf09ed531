"""How much a fusion model relies on each input block, by permutation importance on held-out data.

For a block (composition or graph), the block's values are permuted across the test set, so each
structure is paired with another structure's block while everything else stays in place, and the
increase in MAE over the intact test set is the block's importance. Unlike zeroing a block (the source
chapter's ablation), a permuted block stays inside the distribution the model was trained on, so the
measured drop reflects the information lost rather than the model's reaction to impossible inputs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from hybridmat.features.dataset import CrystalDataset

Predictor = Callable[[CrystalDataset], np.ndarray]
BLOCKS = ("composition", "graph")


def _permuted(dataset: CrystalDataset, block: str, order: np.ndarray) -> CrystalDataset:
    """A copy of ``dataset`` whose ``block`` is reordered by ``order`` (targets and ids stay)."""
    batch = dataset.batch
    if block == "composition":
        batch = dataclasses.replace(batch, composition=batch.composition[order])
    elif block == "graph":
        batch = dataclasses.replace(batch, graphs=[batch.graphs[i] for i in order])
    else:
        raise ValueError(f"unknown block {block!r}; choose from {BLOCKS}")
    return CrystalDataset(batch, dataset.target_names, dataset.line_graph)


def _mae(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    mask = np.isfinite(true)
    return np.array([np.mean(np.abs(pred[mask[:, t], t] - true[mask[:, t], t])) for t in range(true.shape[1])])


def permutation_importance(
    predict: Predictor, dataset: CrystalDataset, repeats: int = 5, seed: int = 0
) -> dict[str, dict[str, float]]:
    """ΔMAE per block and target: ``{block: {target: mean ΔMAE, target + "_std": spread}}``.

    ``predict`` maps a dataset to ``(n, T)`` predictions in original units.
    """
    true = dataset.targets.numpy().astype(np.float64)
    baseline = _mae(predict(dataset), true)
    rng = np.random.default_rng(seed)
    result: dict[str, dict[str, float]] = {}
    for block in BLOCKS:
        deltas = np.array([
            _mae(predict(_permuted(dataset, block, rng.permutation(len(dataset)))), true) - baseline
            for _ in range(repeats)
        ])
        result[block] = {}
        for t, name in enumerate(dataset.target_names):
            result[block][name] = float(deltas[:, t].mean())
            result[block][f"{name}_std"] = float(deltas[:, t].std())
    return result
