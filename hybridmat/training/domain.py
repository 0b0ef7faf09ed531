"""Domain score: how unlike the training data a structure's composition is (k-nearest-neighbour distance).

Why composition, why kNN: the shipped models learn chemistry first (the composition vector feeds every hybrid,
and most large errors are unusual chemistries, not unusual geometries), and a composition vector exists for
every row before any model runs. Each row's Ward-2016/Magpie vector is standardised with the training set's
mean and spread, projected on the training set's leading principal axes (``n_components``), and its score is
the mean Euclidean distance to its ``k`` nearest neighbours among the distinct training compositions
(Euclidean kNN in a standardised feature space is the classic applicability-domain measure of QSAR, Sahigara
et al., Molecules 17, 4791 (2012)). The PCA keeps it small and fast: 12 axes hold the reference set of the
shipped model in about 1 MB, and a k-d tree scores tens of thousands of rows per second on one core.

``threshold`` is a quantile of the validation rows' scores (rows the models never trained on but drawn from the
same distribution), so ``in_domain = score <= threshold`` flags a known fraction of in-distribution rows and
every row further out than that. Everything is plain arrays: :meth:`DomainModel.to_dict` feeds ``np.savez``,
:meth:`DomainModel.from_dict` reads it back (no pickle).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

#: Fraction of validation rows that stay in domain; the rest (and everything further out) is flagged.
DEFAULT_QUANTILE = 0.95


@dataclass(frozen=True, eq=False)
class DomainModel:
    """Standardisation, principal axes and a reference sample of training compositions.

    ``center``/``scale``: ``(F,)`` training mean and spread of each composition feature (spread 1 where constant);
    ``components``: ``(F, d)`` principal axes; ``reference``: ``(R, d)`` training rows projected on them;
    ``composition``: the feature set's name (``ward2016`` or ``magpie``), which must match the featurizer's.
    """

    center: np.ndarray
    scale: np.ndarray
    components: np.ndarray
    reference: np.ndarray
    k: int
    threshold: float
    composition: str

    def project(self, composition: np.ndarray) -> np.ndarray:
        """``(n, d)`` float32 coordinates of composition vectors ``(n, F)`` on the principal axes."""
        composition = np.asarray(composition, dtype=np.float64)
        if composition.ndim != 2 or composition.shape[1] != len(self.center):
            raise ValueError(f"the domain model expects {len(self.center)} {self.composition} composition features "
                             f"per row, got shape {composition.shape}")
        standardised = np.nan_to_num((composition - self.center) / self.scale, nan=0.0, posinf=0.0, neginf=0.0)
        return (standardised @ self.components).astype(np.float32)

    @cached_property
    def _tree(self) -> cKDTree:
        return cKDTree(self.reference.astype(np.float64))

    def score(self, composition: np.ndarray, workers: int = 1) -> np.ndarray:
        """``(n,)`` mean distance to the ``k`` nearest reference rows (0 = a training composition)."""
        points = self.project(composition).astype(np.float64)
        if not len(points):
            return np.empty(0)
        distances, _ = self._tree.query(points, k=self.k, workers=workers)
        return np.asarray(distances, dtype=np.float64).reshape(len(points), self.k).mean(axis=1)

    def in_domain(self, scores: np.ndarray) -> np.ndarray:
        """``scores <= threshold`` (all True while no threshold is set)."""
        scores = np.asarray(scores, dtype=np.float64)
        return np.ones(len(scores), dtype=bool) if np.isnan(self.threshold) else scores <= self.threshold

    def with_threshold(self, validation_scores: np.ndarray, quantile: float = DEFAULT_QUANTILE) -> DomainModel:
        """The threshold at the ``quantile`` of validation rows' scores."""
        if not 0 < quantile <= 1:
            raise ValueError(f"the in-domain quantile must be in (0, 1], got {quantile}")
        return replace(self, threshold=float(np.quantile(np.asarray(validation_scores), quantile)))

    def to_dict(self) -> dict[str, Any]:
        """Plain arrays and scalars (the keyword arguments of ``np.savez``)."""
        return {"center": self.center, "scale": self.scale, "components": self.components,
                "reference": self.reference, "k": np.int64(self.k), "threshold": np.float64(self.threshold),
                "composition": np.str_(self.composition)}

    @classmethod
    def from_dict(cls, arrays: Any) -> DomainModel:
        """Inverse of :meth:`to_dict`; ``arrays`` may be an ``np.load`` result (``allow_pickle=False``)."""
        return cls(center=np.asarray(arrays["center"], dtype=np.float64),
                   scale=np.asarray(arrays["scale"], dtype=np.float64),
                   components=np.asarray(arrays["components"], dtype=np.float64),
                   reference=np.asarray(arrays["reference"], dtype=np.float32), k=int(arrays["k"]),
                   threshold=float(arrays["threshold"]), composition=str(arrays["composition"]))


def fit_domain_model(train_composition: np.ndarray, composition: str, n_components: int = 12,
                     n_reference: int | None = None, k: int = 5, seed: int = 0) -> DomainModel:
    """Standardise and PCA-project the training compositions; keep the distinct ones (a seeded sample of
    ``n_reference`` when given) as neighbours. The threshold is unset (NaN) until :meth:`DomainModel.with_threshold`."""
    features = np.asarray(train_composition, dtype=np.float64)
    if features.ndim != 2 or len(features) <= k:
        raise ValueError(f"a domain model needs more than k={k} training rows, got shape {features.shape}")
    center = np.nanmean(features, axis=0)
    scale = np.nanstd(features, axis=0)
    scale = np.where(np.isfinite(scale) & (scale > 1e-12), scale, 1.0)
    standardised = np.nan_to_num((features - center) / scale, nan=0.0, posinf=0.0, neginf=0.0)
    _, _, axes = np.linalg.svd(standardised - standardised.mean(axis=0), full_matrices=False)
    components = axes[:min(n_components, axes.shape[0])].T
    reference = np.unique(standardised @ components, axis=0)
    if n_reference is not None and n_reference < len(reference):
        chosen = np.random.default_rng(seed).choice(len(reference), n_reference, replace=False)
        reference = reference[np.sort(chosen)]
    if len(reference) < k:
        raise ValueError(f"only {len(reference)} distinct training compositions; need at least k={k}")
    return DomainModel(center, scale, components, reference.astype(np.float32), k, float("nan"), composition)
