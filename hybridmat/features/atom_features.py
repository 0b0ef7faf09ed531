"""92-dimensional one-hot atom features built from pymatgen element data.

In the spirit of CGCNN's ``atom_init.json`` (Xie & Grossman, PRL 120, 145301, 2018), but computed here
from :class:`pymatgen.core.periodic_table.Element` so every number has a traceable source. Each element
(row ``Z`` of :func:`atom_feature_table`) is the concatenation of nine one-hot blocks:

=========================  ====  ==============================================================
property (source)          bins  bins / scale
=========================  ====  ==============================================================
group                        18  categories 1 .. 18. ``Element.group`` (La-Yb, Ac-No report 3)
period                        7  categories 1 .. 7. ``Element.row``
valence electrons            12  categories 1 .. 12, from the group g: g for g <= 12, g - 10 for
                                 g >= 13, 2 for He; f-block elements get 3 (their usual +3 ion)
electronegativity            10  linear over [0.7, 4.0]. ``Element.X`` (Pauling)
covalent radius (Å)          10  linear over [0.25, 2.65] Å. ``CovalentRadius.radius`` (Cordero
                                 et al. 2008) from ``pymatgen.core.molecule_structure_comparator``
first ionisation energy      10  log10 scale over [3.8, 25] eV. ``Element.ionization_energies[0]``
electron affinity            11  one bin for EA <= 0 (anion unbound; pymatgen's negative values
                                 are estimates), then 10 linear bins over (0, 3.7] eV.
                                 ``Element.electron_affinity``
block                         4  categories s, p, d, f. ``Element.block``
atomic volume (Å^3/atom)     10  log10 scale over [7, 120] Å^3. ``Element.molar_volume``
                                 (cm^3/mol) x 1e24 / N_A
=========================  ====  ==============================================================

18 + 7 + 12 + 10 + 10 + 10 + 11 + 4 + 10 = 92. Continuous bins are equal-width on the stated scale;
values outside the range fall into the first or last bin. The labels in :data:`ATOM_FEATURE_LABELS`
give every bin's edges. As in CGCNN the bins are too coarse to separate some f-block elements
(Pr/Nd; Pm/Sm/Gd/Tb; Dy/Ho/Er; Am/Cm share a vector).

**Missing values.** A property pymatgen has no value for (Pauling X of He, Ne, Ar; covalent radius
beyond Cm; molar volume of At, Fr and Z >= 100; several properties of Z >= 104) maps to
an all-zero block for that property, which :func:`missing_properties` reports per element.
:func:`supported_atomic_numbers` lists the elements with all nine properties present. Row 0 and
any Z above :data:`MAX_Z` (118, the last element pymatgen knows) have no data at all:
:func:`atom_features` raises for them instead of returning zeros.
"""

from __future__ import annotations

import math
import warnings
from functools import cache

import numpy as np
from pymatgen.core import Structure
from pymatgen.core.molecule_structure_comparator import CovalentRadius
from pymatgen.core.periodic_table import DummySpecies, Element

MAX_Z = max(element.Z for element in Element)
_AVOGADRO = 6.02214076e23
_BLOCKS = ("s", "p", "d", "f")

# Categorical blocks list their values; continuous blocks give (n_bins, lo, hi, scale).
_CATEGORICAL: dict[str, tuple[int | str, ...]] = {
    "group": tuple(range(1, 19)),
    "period": tuple(range(1, 8)),
    "valence_electrons": tuple(range(1, 13)),
}
_CONTINUOUS: dict[str, tuple[int, float, float, str]] = {
    "electronegativity": (10, 0.7, 4.0, "linear"),
    "covalent_radius": (10, 0.25, 2.65, "linear"),
    "first_ionization_energy": (10, 3.8, 25.0, "log10"),
    "electron_affinity": (10, 0.0, 3.7, "linear"),  # plus one leading bin for EA <= 0
    "atomic_volume": (10, 7.0, 120.0, "log10"),
}
PROPERTIES = (
    "group",
    "period",
    "valence_electrons",
    "electronegativity",
    "covalent_radius",
    "first_ionization_energy",
    "electron_affinity",
    "block",
    "atomic_volume",
)


def _edges(name: str) -> np.ndarray:
    n_bins, lo, hi, scale = _CONTINUOUS[name]
    if scale == "log10":
        return np.logspace(math.log10(lo), math.log10(hi), n_bins + 1)
    return np.linspace(lo, hi, n_bins + 1)


def _labels() -> list[str]:
    labels: list[str] = []
    for name in PROPERTIES:
        if name in _CATEGORICAL:
            labels += [f"{name}={value}" for value in _CATEGORICAL[name]]
        elif name == "block":
            labels += [f"block={block}" for block in _BLOCKS]
        else:
            edges = _edges(name)
            if name == "electron_affinity":
                labels.append("electron_affinity<=0")
            labels += [f"{name}[{lo:.4g},{hi:.4g})" for lo, hi in zip(edges[:-1], edges[1:])]
    return labels


ATOM_FEATURE_LABELS: list[str] = _labels()
N_ATOM_FEATURES = len(ATOM_FEATURE_LABELS)


def _finite(value: object) -> float | None:
    try:
        value = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _raw_properties(element: Element) -> dict[str, object]:
    """The nine raw properties of one element; ``None`` where pymatgen has no value."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns (and returns NaN/None) for missing data
        group = element.group
        energies = element.ionization_energies
        try:
            affinity = _finite(element.electron_affinity)
        except KeyError:  # no entry at all for some superheavy elements
            affinity = None
        molar_volume = _finite(element.molar_volume)  # cm^3/mol, None when pymatgen has no value
        return {
            "group": group,
            "period": element.row,
            "valence_electrons": group if group <= 12 else (2 if element.Z == 2 else group - 10),
            "electronegativity": _finite(element.X),
            "covalent_radius": _finite(CovalentRadius.radius.get(element.symbol)),
            "first_ionization_energy": _finite(energies[0]) if energies else None,
            "electron_affinity": affinity,
            "block": element.block,
            "atomic_volume": None if molar_volume is None else molar_volume * 1e24 / _AVOGADRO,
        }


def _one_hot(name: str, value: object) -> np.ndarray:
    if name in _CATEGORICAL or name == "block":
        values = _BLOCKS if name == "block" else _CATEGORICAL[name]
        block = np.zeros(len(values), dtype=np.float32)
        if value in values:
            block[values.index(value)] = 1.0
        return block
    edges = _edges(name)
    extra = 1 if name == "electron_affinity" else 0
    block = np.zeros(len(edges) - 1 + extra, dtype=np.float32)
    if value is None:
        return block
    if extra and value <= 0.0:  # type: ignore[operator]
        block[0] = 1.0
        return block
    index = int(np.searchsorted(edges, value, side="right")) - 1  # same bins on a log or linear axis
    block[extra + min(max(index, 0), len(edges) - 2)] = 1.0
    return block


@cache
def _table_and_missing() -> tuple[np.ndarray, dict[int, tuple[str, ...]]]:
    table = np.zeros((MAX_Z + 1, N_ATOM_FEATURES), dtype=np.float32)
    missing: dict[int, tuple[str, ...]] = {0: PROPERTIES}
    for element in Element:
        raw = _raw_properties(element)
        table[element.Z] = np.concatenate([_one_hot(name, raw[name]) for name in PROPERTIES])
        missing[element.Z] = tuple(name for name in PROPERTIES if raw[name] is None)
    table.flags.writeable = False
    return table, missing


def atom_feature_table() -> np.ndarray:
    """Read-only ``(MAX_Z + 1, 92)`` float32 table; row ``Z`` holds element ``Z`` (row 0 is zeros)."""
    return _table_and_missing()[0]


def missing_properties(z: int) -> tuple[str, ...]:
    """Names of the properties whose block is all-zero for element ``z`` because data is missing."""
    if not 1 <= z <= MAX_Z:
        raise ValueError(f"no element data for Z={z}: pymatgen knows Z=1..{MAX_Z}")
    return _table_and_missing()[1][z]


def supported_atomic_numbers() -> np.ndarray:
    """Atomic numbers (sorted, int64) for which all nine properties have data."""
    missing = _table_and_missing()[1]
    return np.array([z for z in range(1, MAX_Z + 1) if not missing[z]], dtype=np.int64)


def atom_features(atomic_numbers: np.ndarray) -> np.ndarray:
    """Look up ``(N, 92)`` float32 features; raises ``ValueError`` for Z outside ``1..MAX_Z``."""
    z = np.asarray(atomic_numbers, dtype=np.int64)
    bad = (z < 1) | (z > MAX_Z)
    if bad.any():
        raise ValueError(
            f"no atom features for atomic numbers {sorted(set(z[bad].tolist()))}: pymatgen knows "
            f"Z=1..{MAX_Z}; drop these structures or extend hybridmat.features.atom_features"
        )
    return atom_feature_table()[z]


def unsupported_element_reason(structure: Structure) -> str | None:
    """Why ``structure`` has sites without atom features (None when every site has them).

    Only species with no element data at all are reported (dummy species, Z outside ``1..MAX_Z``);
    elements with some missing properties are featurized with the zero blocks documented above.
    """
    for species in structure.composition:
        if isinstance(species, DummySpecies):
            return f"species {species} is a DummySpecies, not an element: no atom features; replace it"
        if not 1 <= species.Z <= MAX_Z:
            return f"element {species} (Z={species.Z}) has no atom features: pymatgen knows Z=1..{MAX_Z}"
    return None
