"""The 145 composition features of Ward et al. (2016), vectorised.

Labels, order and values are those of matminer's ``MultipleFeaturizer([Stoichiometry(),
ElementProperty.from_preset("magpie"), ValenceOrbital(props=["frac"]), IonProperty(fast=True)])``.

With element amounts ``w_e``, fractions ``f_e = w_e / Σ w``, Magpie data ``N*Valence`` and pymatgen
electronegativities ``χ_e``:

- ``p-norm`` (p = 0, 2, 3, 5, 7, 10): number of elements for p = 0, else ``(Σ f_e^p)^(1/p)``;
- ``frac {s,p,d,f} valence electrons``: ``mean(N{o}Valence) / mean(NValence)`` (amount-weighted means);
- ``compound possible``: some choice of one common oxidation state ``q_e`` per element has
  ``|Σ q_e w_e| ≤ 1e-8``; with oxidation-state species, ``|Σ q_s w_s| ≤ 1e-8`` over the species;
- ``max ionic char``: ``max_{a<b} I_ab`` with ``I_ab = 1 - exp(-(χ_a - χ_b)² / 4)``;
- ``avg ionic char``: ``Σ_{a<b} f_a f_b I_ab``. Single elements give (1, 0, 0).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from functools import cache

import numpy as np
from pymatgen.core import Composition, Element

from hybridmat.features.elements import (
    MAX_Z,
    CompositionBatch,
    encode_compositions,
    magpie_table,
    unsupported_reason,
)
from hybridmat.features.magpie import (
    MAGPIE_PROPERTIES,
    MAGPIE_STATS,
    WARD_2016_CITATION,
    MagpieFeaturizer,
    magpie_features,
)

P_NORMS: tuple[int, ...] = (0, 2, 3, 5, 7, 10)
ORBITALS: tuple[str, ...] = ("s", "p", "d", "f")
ION_LABELS: tuple[str, ...] = ("compound possible", "max ionic char", "avg ionic char")

DEML_2016_CITATION = (
    "@article{deml_ohayre_wolverton_stevanovic_2016, title={Predicting density "
    "functional theory total energies and enthalpies of formation of metal-nonmetal "
    "compounds by linear regression}, volume={47}, DOI={10.1002/chin.201644254}, "
    "number={44}, journal={ChemInform}, author={Deml, Ann M. and Ohayre, Ryan and "
    "Wolverton, Chris and Stevanovic, Vladan}, year={2016}}"
)

# Upper bound on rows × oxidation-state combinations in one charge-balance matrix product.
MAX_CHARGE_PRODUCT = 1 << 22


@cache
def pymatgen_electronegativity(impute_nan: bool = True) -> np.ndarray:
    """(MAX_Z + 1,) Pauling electronegativity ``Element.X`` as matminer's ``PymatgenData`` returns it.

    With ``impute_nan`` a missing (NaN or zero) value is replaced by the mean over all elements.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        x = np.array([np.nan] + [Element.from_Z(z).X for z in range(1, MAX_Z + 1)], dtype=float)
    if impute_nan:
        valid = ~np.isnan(x) & (x != 0)
        valid[0] = False
        x = np.where(valid, x, np.nanmean(np.where(valid, x, np.nan)[1:]))
    x.setflags(write=False)
    return x


@cache
def _oxidation_combinations(zs: tuple[int, ...]) -> np.ndarray:
    """(n_combinations, len(zs)) every choice of one common oxidation state per element."""
    states = [Element.from_Z(z).common_oxidation_states for z in zs]
    return np.array(list(itertools.product(*states)), dtype=float).reshape(-1, len(zs))


def stoichiometry_features(batch: CompositionBatch) -> np.ndarray:
    """(n, 6) p-norms of the element fractions, matminer's ``Stoichiometry()``."""
    fractions = batch.amounts / batch.amounts.sum(axis=1, keepdims=True)
    columns = [batch.n_elements.astype(float)]
    columns += [(fractions**p).sum(axis=1) ** (1.0 / p) for p in P_NORMS[1:]]
    return np.stack(columns, axis=1)


def valence_orbital_features(magpie: np.ndarray) -> np.ndarray:
    """(n, 4) fraction of valence electrons per orbital, from the Magpie mean columns."""
    mean = MAGPIE_STATS.index("mean")

    def mean_of(prop: str) -> np.ndarray:
        return magpie[:, MAGPIE_PROPERTIES.index(prop) * len(MAGPIE_STATS) + mean]

    total = mean_of("NValence")
    return np.stack([mean_of(f"N{orb}Valence") / total for orb in ORBITALS], axis=1)


def _has_oxidation_states(composition: Composition) -> bool:
    """matminer's ``has_oxidation_states``: every species carries an oxidation state."""
    return all(
        not isinstance(species, Element) and getattr(species, "oxi_state", None) is not None
        for species in composition
    )


def _charge_balanced(batch: CompositionBatch, rows: np.ndarray) -> np.ndarray:
    """(len(rows),) whether one common oxidation state per element neutralises each row.

    Rows are grouped by their ordered element tuple; the oxidation-state combinations of each
    tuple are cached and tested against every row of the group with one matrix product.
    """
    possible = np.zeros(len(rows), dtype=bool)
    keys, inverse = np.unique(batch.z[rows], axis=0, return_inverse=True)
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(keys)))
    for key, group in zip(keys, np.split(order, bounds[:-1])):
        zs = tuple(int(z) for z in key if z)
        combos = _oxidation_combinations(zs)
        if len(combos) == 0:
            continue
        step = max(1, MAX_CHARGE_PRODUCT // len(combos))
        for start in range(0, len(group), step):
            part = group[start : start + step]
            charge = batch.amounts[rows[part], : len(zs)] @ combos.T
            possible[part] = (np.abs(charge) <= 1e-8).any(axis=1)
    return possible


def ion_features(
    batch: CompositionBatch, compositions: Sequence[Composition], electronegativity: np.ndarray
) -> np.ndarray:
    """(n, 3) matminer's ``IonProperty(fast=True)``: compound possible, max and avg ionic char.

    Reproduces matminer's quirk for compositions whose species all carry oxidation states: the
    pair weights are the first ``n_elements`` species fractions (species order), so an element
    present as two species (Fe2+, Fe3+) shifts the weights of the elements after it.
    """
    n, k = batch.z.shape
    fractions = batch.amounts / batch.amounts.sum(axis=1, keepdims=True)
    possible = np.ones(n, dtype=bool)
    by_elements = []
    for i in np.flatnonzero(batch.n_elements >= 2):
        comp = compositions[i]
        if not _has_oxidation_states(comp):
            by_elements.append(i)
            continue
        charges, amounts = zip(*((species.oxi_state, amount) for species, amount in comp.items()))
        possible[i] = np.isclose(np.dot(charges, amounts), 0)
        c = batch.n_elements[i]
        fractions[i, :c] = np.true_divide(amounts, sum(amounts))[:c]
    by_elements = np.asarray(by_elements, dtype=np.int64)
    possible[by_elements] = _charge_balanced(batch, by_elements)

    x = electronegativity[batch.z]
    ionic = 1.0 - np.exp(-0.25 * (x[:, :, None] - x[:, None, :]) ** 2)
    pairs = batch.mask[:, :, None] & batch.mask[:, None, :] & np.triu(np.ones((k, k), dtype=bool), 1)
    max_ionic = np.where(pairs, ionic, -np.inf).max(axis=(1, 2))
    avg_ionic = (np.where(pairs, ionic, 0.0) * fractions[:, :, None] * fractions[:, None, :]).sum(axis=(1, 2))
    single = batch.n_elements < 2
    max_ionic[single] = 0.0
    avg_ionic[single] = 0.0
    return np.stack([possible.astype(float), max_ionic, avg_ionic], axis=1)


class Ward2016Featurizer:
    """The 145 general-purpose composition features of Ward et al., npj Comput. Mater. 2, 16028 (2016).

    Stoichiometry (6) + Magpie (132) + valence-orbital fractions (4) + ionic character (3), with
    matminer's labels, order and values (``impute_nan`` as in matminer, default True).
    """

    def __init__(self, impute_nan: bool = True) -> None:
        self.impute_nan = impute_nan
        self.table = magpie_table(impute_nan)
        self.electronegativity = pymatgen_electronegativity(impute_nan)

    def feature_labels(self) -> list[str]:
        """matminer's labels, from ``"0-norm"`` to ``"avg ionic char"``."""
        return [
            *(f"{p}-norm" for p in P_NORMS),
            *MagpieFeaturizer(self.impute_nan).feature_labels(),
            *(f"frac {orb} valence electrons" for orb in ORBITALS),
            *ION_LABELS,
        ]

    def featurize(self, composition: Composition) -> np.ndarray:
        """(145,) float64 features of one composition."""
        return self.featurize_many([composition])[0]

    def featurize_many(self, compositions: Sequence[Composition]) -> np.ndarray:
        """(n, 145) float64 features; raises ``UnsupportedElementError`` on an unsupported row."""
        compositions = list(compositions)
        batch = encode_compositions(compositions, self.table)
        magpie = magpie_features(batch, self.table)
        return np.concatenate(
            [
                stoichiometry_features(batch),
                magpie,
                valence_orbital_features(magpie),
                ion_features(batch, compositions, self.electronegativity),
            ],
            axis=1,
        )

    def unsupported_reason(self, composition: Composition) -> str | None:
        """Why ``composition`` cannot be featurized (None when it can)."""
        return unsupported_reason(composition, self.table)

    def citations(self) -> list[str]:
        """BibTeX of Ward et al. (2016) and Deml et al. (2016, valence-orbital features)."""
        return [WARD_2016_CITATION, DEML_2016_CITATION]

    def implementors(self) -> list[str]:
        """Authors of the four matminer featurizers this reproduces."""
        return MagpieFeaturizer(self.impute_nan).implementors()
