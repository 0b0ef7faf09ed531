"""Prototype library: built-ins from Wyckoff positions, AFLOW lookup, charge balance and lattice scaling."""

from __future__ import annotations

import pytest
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from hybridmat.data.prototypes import (
    BUILTIN_PROTOTYPES,
    balance_charges,
    get_prototype,
    list_prototypes,
    resolve_prototype,
)

BUILTINS = [
    ("rocksalt", "Fm-3m", "NaCl"),
    ("zincblende", "F-43m", "ZnS"),
    ("wurtzite", "P6_3mc", "ZnO"),
    ("fluorite", "Fm-3m", "CaF2"),
    ("perovskite", "Pm-3m", "SrTiO3"),
    ("spinel", "Fd-3m", "MgAl2O4"),
    ("heusler", "Fm-3m", "MnAlCu2"),
]


def conventional_a(structure) -> float:
    return SpacegroupAnalyzer(structure, symprec=0.1).get_conventional_standard_structure().lattice.a


@pytest.mark.parametrize(("name", "symbol", "formula"), BUILTINS)
def test_builtin_has_space_group_and_stoichiometry(name: str, symbol: str, formula: str) -> None:
    prototype = get_prototype(name)
    assert SpacegroupAnalyzer(prototype.structure, symprec=0.1).get_space_group_symbol() == symbol
    assert prototype.structure.composition.reduced_formula == formula
    assert sum(prototype.counts) == len(prototype.structure)
    assert prototype.source == "builtin"


@pytest.mark.parametrize(("name", "symbol", "formula"), BUILTINS)
def test_substitution_keeps_space_group(name: str, symbol: str, formula: str) -> None:
    prototype = get_prototype(name)
    elements = ["Ba", "Sn", "S"][: len(prototype.sublattices)] if name != "heusler" else ["Co", "Ti", "Sn"]
    structure = prototype.substitute(elements)
    assert SpacegroupAnalyzer(structure, symprec=0.1).get_space_group_symbol() == symbol
    assert [structure.composition[e] for e in elements] == list(prototype.counts)


def test_builtin_roles() -> None:
    assert [s.role for s in get_prototype("perovskite").sublattices] == ["cation", "cation", "anion"]
    assert [s.reference for s in get_prototype("spinel").sublattices] == ["Mg", "Al", "O"]
    assert get_prototype("heusler").kind == "intermetallic"
    assert get_prototype("rocksalt").kind == "ionic"


def test_list_prototypes_has_builtins_then_unique_aflow_names() -> None:
    names = list_prototypes()
    assert names[: len(BUILTIN_PROTOTYPES)] == list(BUILTIN_PROTOTYPES)
    assert len(names) == len(set(names)) > 250
    assert "A_cF4_225_a" in names and "AB_oP8_62_c_c-FeB" in names


def test_aflow_prototype_by_label() -> None:
    fcc = get_prototype("A_cF4_225_a")
    assert fcc.source == "aflow" and fcc.kind == "intermetallic"
    assert SpacegroupAnalyzer(fcc.structure, symprec=0.1).get_space_group_number() == 225
    assert len(fcc.structure) == 1


def test_aflow_aliases_and_inferred_roles() -> None:
    assert resolve_prototype("Halite") == resolve_prototype("B1") == "AB_cF8_225_a_b"
    assert resolve_prototype("ab_cf8_225_a_b") == "AB_cF8_225_a_b"
    assert resolve_prototype("Rock Salt") == "rocksalt"  # built-in names win over AFLOW minerals
    halite = get_prototype("Halite")
    roles = {s.reference: s.role for s in halite.sublattices}
    assert roles == {"Na": "cation", "Cl": "anion"}


def test_unknown_and_ambiguous_prototypes_raise() -> None:
    with pytest.raises(ValueError, match="rocksalt, zincblende") as info:
        get_prototype("rocksalts")
    assert "did you mean rocksalt" in str(info.value)
    with pytest.raises(ValueError, match="AB_oP8_62_c_c-FeB"):
        get_prototype("AB_oP8_62_c_c")


def test_get_prototype_returns_a_copy() -> None:
    get_prototype("rocksalt").structure.replace_species({"Na": "K"})
    assert get_prototype("rocksalt").structure.composition.reduced_formula == "NaCl"


def test_balance_charges() -> None:
    assert balance_charges(["Na", "Cl"], [1, 1], ["cation", "anion"]) == (1, -1)
    assert balance_charges(["Mg", "Al", "O"], [1, 2, 4], ["cation", "cation", "anion"]) == (2, 3, -2)
    assert balance_charges(["Na", "Cl"], [1, 2], ["cation", "anion"]) is None  # NaCl2
    assert balance_charges(["Cl", "Na"], [1, 1], ["cation", "anion"]) is None  # roles swapped
    assert balance_charges(["O", "F"], [1, 2]) is None  # the anion must be the more electronegative
    assert balance_charges(["Cu", "Mn", "Al"], [2, 1, 1]) is None  # intermetallic


def test_lattice_scaling_rules() -> None:
    # bond rule, absolute: NaCl 5.64 A within 1 % (0.4 % achieved), SrTiO3 3.905 A within 5 % (2.9 %)
    rocksalt, perovskite = get_prototype("rocksalt"), get_prototype("perovskite")
    assert conventional_a(rocksalt.substitute(["Na", "Cl"], [1, -1])) == pytest.approx(5.64, rel=0.01)
    assert perovskite.substitute(["Sr", "Ti", "O"], [2, 4, -2]).lattice.a == pytest.approx(3.905, rel=0.05)
    # volume rule (Zen's law): Cu2MnAl 5.95 A within 2 %
    heusler = get_prototype("heusler")
    assert conventional_a(heusler.substitute(["Cu", "Mn", "Al"])) == pytest.approx(5.95, rel=0.02)
    # reference rule (AFLOW): the reference compound keeps its cell; KCl 6.29 A within 3 %
    halite = get_prototype("Halite")
    assert halite.scale(["Cl", "Na"], [-1, 1]) == pytest.approx(1.0)
    assert conventional_a(halite.substitute(["Cl", "K"], [-1, 1])) == pytest.approx(6.29, rel=0.03)
    assert get_prototype("A_cF4_225_a").scale(["Cu"]) == pytest.approx(1.0)
