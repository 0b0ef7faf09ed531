"""92-dim one-hot atom features: layout, known elements, missing data and unknown atomic numbers."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import DummySpecies, Lattice, Structure

from hybridmat.features.atom_features import (
    ATOM_FEATURE_LABELS,
    MAX_Z,
    PROPERTIES,
    atom_feature_table,
    atom_features,
    missing_properties,
    supported_atomic_numbers,
    unsupported_element_reason,
)

BLOCK_SIZES = {
    "group": 18,
    "period": 7,
    "valence_electrons": 12,
    "electronegativity": 10,
    "covalent_radius": 10,
    "first_ionization_energy": 10,
    "electron_affinity": 11,
    "block": 4,
    "atomic_volume": 10,
}


def _block(row: np.ndarray, name: str) -> np.ndarray:
    start = sum(BLOCK_SIZES[p] for p in PROPERTIES[: PROPERTIES.index(name)])
    return row[start : start + BLOCK_SIZES[name]]


def _hot_label(z: int, name: str) -> str:
    start = sum(BLOCK_SIZES[p] for p in PROPERTIES[: PROPERTIES.index(name)])
    (index,) = np.flatnonzero(_block(atom_feature_table()[z], name))
    return ATOM_FEATURE_LABELS[start + index]


def test_table_layout() -> None:
    table = atom_feature_table()
    assert table.shape == (MAX_Z + 1, 92) and table.dtype == np.float32
    assert len(ATOM_FEATURE_LABELS) == 92 == len(set(ATOM_FEATURE_LABELS))
    assert sum(BLOCK_SIZES.values()) == 92 and tuple(BLOCK_SIZES) == PROPERTIES
    assert atom_feature_table() is table and not table.flags.writeable
    assert not table[0].any()
    assert set(np.unique(table)) <= {0.0, 1.0}


def test_every_block_is_one_hot_unless_missing() -> None:
    table = atom_feature_table()
    for z in range(1, MAX_Z + 1):
        missing = missing_properties(z)
        for name in PROPERTIES:
            assert _block(table[z], name).sum() == (0.0 if name in missing else 1.0), (z, name)


@pytest.mark.parametrize(
    ("z", "expected"),
    [
        (8, {"group": "group=16", "period": "period=2", "valence_electrons": "valence_electrons=6"}),
        (26, {"group": "group=8", "period": "period=4", "valence_electrons": "valence_electrons=8"}),
        (2, {"group": "group=18", "valence_electrons": "valence_electrons=2", "block": "block=p"}),
        (58, {"group": "group=3", "period": "period=6", "valence_electrons": "valence_electrons=3"}),
        (8, {"block": "block=p"}),
        (26, {"block": "block=d"}),
        (58, {"block": "block=f"}),
        (7, {"electron_affinity": "electron_affinity<=0"}),  # pymatgen: -0.07 eV, unbound anion
        (9, {"electron_affinity": "electron_affinity[3.33,3.7)"}),
        (9, {"electronegativity": "electronegativity[3.67,4)"}),
        (55, {"atomic_volume": "atomic_volume[90.32,120)"}),
        (55, {"first_ionization_energy": "first_ionization_energy[3.8,4.588)"}),
        (14, {"covalent_radius": "covalent_radius[0.97,1.21)"}),  # Cordero: 1.11 Å
    ],
)
def test_known_elements(z: int, expected: dict[str, str]) -> None:
    for name, label in expected.items():
        assert _hot_label(z, name) == label


def test_missing_data_is_reported() -> None:
    assert missing_properties(2) == ("electronegativity",)  # no Pauling X for He
    assert missing_properties(85) == ("atomic_volume",)
    assert "covalent_radius" in missing_properties(100)
    supported = supported_atomic_numbers()
    assert supported.dtype == np.int64
    assert set(range(1, 97)) - set(supported.tolist()) == {2, 10, 18, 85, 87}
    assert all(not missing_properties(int(z)) for z in supported)


def test_atom_features_lookup_and_unknown_z() -> None:
    np.testing.assert_array_equal(atom_features(np.array([8, 1, 8])), atom_feature_table()[[8, 1, 8]])
    for bad in (0, MAX_Z + 1):
        with pytest.raises(ValueError, match=f"atomic numbers \\[{bad}\\]"):
            atom_features(np.array([1, bad]))
    with pytest.raises(ValueError, match="no element data"):
        missing_properties(MAX_Z + 1)


def test_unsupported_element_reason() -> None:
    lattice = Lattice.cubic(4.0)
    assert unsupported_element_reason(Structure(lattice, ["He", "Ar"], [[0, 0, 0], [0.5, 0.5, 0.5]])) is None
    dummy = Structure(lattice, [DummySpecies("X"), "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert "DummySpecies" in unsupported_element_reason(dummy)
