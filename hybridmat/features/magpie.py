"""Vectorised Magpie composition features, identical to matminer's ``ElementProperty.from_preset("magpie")``.

For a composition with element amounts ``w_e`` (``W = Σ w_e``) and element property values ``x_e``:

- minimum / maximum / range: ``min x_e``, ``max x_e``, ``max - min`` over the elements present;
- mean: ``Σ w_e x_e / W``;
- avg_dev: ``Σ w_e |x_e - mean| / W``;
- mode: the smallest ``x_e`` among the elements whose amount is ``np.isclose`` to the largest amount
  (matminer's tie rule, applied to the raw amounts, not fractions).

A NaN property value (only with ``impute_nan=False``) makes every statistic of that property NaN,
except ``mode`` when the NaN element is not among the most abundant ones, as in matminer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pymatgen.core import Composition

from hybridmat.features.elements import (
    CompositionBatch,
    ElementTable,
    encode_compositions,
    magpie_table,
    unsupported_reason,
)

MAGPIE_PROPERTIES: tuple[str, ...] = (
    "Number",
    "MendeleevNumber",
    "AtomicWeight",
    "MeltingT",
    "Column",
    "Row",
    "CovalentRadius",
    "Electronegativity",
    "NsValence",
    "NpValence",
    "NdValence",
    "NfValence",
    "NValence",
    "NsUnfilled",
    "NpUnfilled",
    "NdUnfilled",
    "NfUnfilled",
    "NUnfilled",
    "GSvolume_pa",
    "GSbandgap",
    "GSmagmom",
    "SpaceGroupNumber",
)
MAGPIE_STATS: tuple[str, ...] = ("minimum", "maximum", "range", "mean", "avg_dev", "mode")

WARD_2016_CITATION = (
    "@article{ward_agrawal_choudary_wolverton_2016, title={A general-purpose "
    "machine learning framework for predicting properties of inorganic materials}, "
    "volume={2}, DOI={10.1038/npjcompumats.2017.28}, number={1}, journal={npj "
    "Computational Materials}, author={Ward, Logan and Agrawal, Ankit and Choudhary, "
    "Alok and Wolverton, Christopher}, year={2016}}"
)

# Rows per block of the (rows, n_elements, 22) value tensor: keeps temporaries small and in cache.
CHUNK_ROWS = 2048


def property_statistics(values: np.ndarray, amounts: np.ndarray) -> np.ndarray:
    """Weighted statistics of element properties for compositions with the same number of elements.

    Args:
        values: (n, c, p) property ``p`` of the element in slot ``c``.
        amounts: (n, c) element amounts.

    Returns:
        (n, p, 6) array of ``MAGPIE_STATS`` per property.
    """
    weights = amounts[:, :, None]
    total = weights.sum(axis=1)
    minimum = values.min(axis=1)
    maximum = values.max(axis=1)
    mean = (values * weights).sum(axis=1) / total
    avg_dev = (np.abs(values - mean[:, None, :]) * weights).sum(axis=1) / total
    top = amounts.max(axis=1, keepdims=True)
    tied = np.abs(amounts - top) <= 1e-8 + 1e-5 * np.abs(top)
    mode = np.where(tied[:, :, None], values, np.inf).min(axis=1)
    return np.stack([minimum, maximum, maximum - minimum, mean, avg_dev, mode], axis=2)


def magpie_features(batch: CompositionBatch, table: ElementTable) -> np.ndarray:
    """(n, 132) Magpie features of an encoded batch, in matminer's order (property-major).

    Rows are grouped by their number of elements so that no padding enters the statistics.
    """
    columns = table.columns(MAGPIE_PROPERTIES)
    out = np.empty((len(batch), len(MAGPIE_PROPERTIES) * len(MAGPIE_STATS)))
    n_elements = batch.n_elements
    for c in np.unique(n_elements):
        same = np.flatnonzero(n_elements == c)
        for start in range(0, len(same), CHUNK_ROWS):
            rows = same[start : start + CHUNK_ROWS]
            stats = property_statistics(columns[batch.z[rows, :c]], batch.amounts[rows, :c])
            out[rows] = stats.reshape(len(rows), -1)
    return out


class MagpieFeaturizer:
    """The 132 Magpie features (22 element properties × 6 statistics) of Ward et al. (2016).

    Same labels, order and values as matminer's ``ElementProperty.from_preset("magpie", impute_nan)``;
    species with oxidation states count as their element.
    """

    def __init__(self, impute_nan: bool = True) -> None:
        self.impute_nan = impute_nan
        self.table = magpie_table(impute_nan)

    def feature_labels(self) -> list[str]:
        """matminer's labels, e.g. ``"MagpieData minimum Number"``."""
        return [f"MagpieData {stat} {prop}" for prop in MAGPIE_PROPERTIES for stat in MAGPIE_STATS]

    def featurize(self, composition: Composition) -> np.ndarray:
        """(132,) float64 features of one composition."""
        return self.featurize_many([composition])[0]

    def featurize_many(self, compositions: Sequence[Composition]) -> np.ndarray:
        """(n, 132) float64 features; raises ``UnsupportedElementError`` on an unsupported row."""
        return magpie_features(encode_compositions(list(compositions), self.table), self.table)

    def unsupported_reason(self, composition: Composition) -> str | None:
        """Why ``composition`` cannot be featurized, e.g. ``"element Og (Z=118) has no Magpie data"``."""
        return unsupported_reason(composition, self.table)

    def citations(self) -> list[str]:
        """BibTeX of the Magpie feature set."""
        return [WARD_2016_CITATION]

    def implementors(self) -> list[str]:
        """Authors of matminer's ElementProperty, whose behaviour this reproduces."""
        return ["Jiming Chen", "Logan Ward", "Anubhav Jain", "Alex Dunn", "Guillaume Brunin (Matgenix)"]
