"""Candidate generation: chemistry filter, scaling, de-duplication, sampling and the Source wrapper."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from hybridmat.data.candidates import DEFAULT_PROTOTYPES, CandidateSource, generate_candidates
from hybridmat.data.prototypes import get_prototype

ELEMENTS = ["Li", "Na", "Mg", "Ca", "Sr", "Ti", "Fe", "Al", "Zn", "Cu", "Mn", "O", "S", "F", "Cl"]


def ids(records) -> list[str]:
    return [r.id for r in records]


def by_id(records) -> dict:
    return {r.id: r for r in records}


def test_charge_balance_keeps_nacl_and_mgo_only() -> None:
    records = generate_candidates(["Na", "Cl", "Mg", "O"], ["rocksalt"])
    assert sorted(ids(records)) == ["cand-rocksalt-MgO", "cand-rocksalt-NaCl"]
    record = by_id(records)["cand-rocksalt-NaCl"]
    assert record.provenance == "substitution:rocksalt" and dict(record.targets) == {}


def test_impossible_assignments_are_rejected_unless_unfiltered() -> None:
    assert generate_candidates(["Na", "Cl"], ["fluorite"]) == []  # NaCl2: no neutral oxidation states
    unfiltered = ids(generate_candidates(["Na", "Cl"], ["fluorite"], charge_balanced=False))
    assert "cand-fluorite-NaCl2" in unfiltered


def test_intermetallic_filter_keeps_metals_only() -> None:
    records = generate_candidates(["Cu", "Mn", "Al", "O"], ["heusler"])
    assert "cand-heusler-MnAlCu2" in ids(records)
    assert all("O" not in r.structure.composition for r in records)
    assert any("O" in r.structure.composition
               for r in generate_candidates(["Cu", "Mn", "Al", "O"], ["heusler"], charge_balanced=False))


def test_lattice_constants_close_to_experiment() -> None:
    records = by_id(generate_candidates(["Na", "Cl", "Sr", "Ti", "O"], ["rocksalt", "perovskite"]))
    nacl = SpacegroupAnalyzer(records["cand-rocksalt-NaCl"].structure, symprec=0.1)
    assert nacl.get_conventional_standard_structure().lattice.a == pytest.approx(5.64, rel=0.01)  # 0.4 %
    srtio3 = records["cand-perovskite-SrTiO3"].structure
    assert srtio3.lattice.a == pytest.approx(3.905, rel=0.05)  # 2.9 %


def test_perovskite_puts_the_large_cation_on_the_a_site() -> None:
    (record,) = generate_candidates(["Sr", "Ti", "O"], ["perovskite"])
    site_sublattice = get_prototype("perovskite").site_sublattice
    a_site = [site.specie.symbol for site, k in zip(record.structure, site_sublattice) if k == 0]
    assert a_site == ["Sr"]


@pytest.mark.parametrize("name", DEFAULT_PROTOTYPES)
def test_candidates_keep_the_prototype_space_group(name: str) -> None:
    expected = SpacegroupAnalyzer(get_prototype(name).structure, symprec=0.1).get_space_group_symbol()
    for record in generate_candidates(ELEMENTS, [name], n=3, seed=1):
        assert SpacegroupAnalyzer(record.structure, symprec=0.1).get_space_group_symbol() == expected


def test_no_duplicate_ids_or_formula_prototype_pairs() -> None:
    for balanced in (True, False):
        records = generate_candidates(ELEMENTS, DEFAULT_PROTOTYPES, charge_balanced=balanced)
        assert len(set(ids(records))) == len(records) > 100
        pairs = {(r.formula, r.provenance) for r in records}
        assert len(pairs) == len(records)


def test_equivalent_prototypes_are_deduplicated() -> None:
    records = generate_candidates(["Na", "K", "Cl"], ["Halite", "rocksalt", "B1"])
    assert ids(records) == ["cand-rocksalt-KCl", "cand-rocksalt-NaCl"]


def test_same_seed_same_candidates_and_other_seed_other_subset() -> None:
    first = generate_candidates(ELEMENTS, DEFAULT_PROTOTYPES, n=50, seed=3)
    again = generate_candidates(list(reversed(ELEMENTS)), list(reversed(DEFAULT_PROTOTYPES)), n=50, seed=3)
    assert ids(first) == ids(again) and len(first) == 50
    for a, b in zip(first, again):
        assert a.structure.species == b.structure.species
        np.testing.assert_array_equal(a.structure.lattice.matrix, b.structure.lattice.matrix)
        np.testing.assert_array_equal(a.structure.frac_coords, b.structure.frac_coords)
    other = generate_candidates(ELEMENTS, DEFAULT_PROTOTYPES, n=50, seed=4)
    assert set(ids(other)) != set(ids(first))


def test_sample_is_in_pool_order() -> None:
    pool = ids(generate_candidates(ELEMENTS, ["perovskite", "spinel"]))
    sample = ids(generate_candidates(ELEMENTS, ["perovskite", "spinel"], n=20, seed=0))
    assert sample == [i for i in pool if i in set(sample)]


def test_n_larger_than_pool_returns_the_pool() -> None:
    pool = ids(generate_candidates(ELEMENTS, ["rocksalt"]))
    assert ids(generate_candidates(ELEMENTS, ["rocksalt"], n=len(pool) + 100, seed=9)) == pool
    assert generate_candidates(ELEMENTS, ["rocksalt"], n=0) == []


def test_aflow_prototype_by_label() -> None:
    records = by_id(generate_candidates(["Na", "K", "Cl"], ["AB_cF8_225_a_b"]))
    assert set(records) == {"cand-AB_cF8_225_a_b-NaCl", "cand-AB_cF8_225_a_b-KCl"}
    kcl = SpacegroupAnalyzer(records["cand-AB_cF8_225_a_b-KCl"].structure, symprec=0.1)
    assert kcl.get_space_group_number() == 225
    assert kcl.get_conventional_standard_structure().lattice.a == pytest.approx(6.29, rel=0.03)


def test_unknown_prototype_or_element_raises_with_valid_names() -> None:
    with pytest.raises(ValueError, match="rocksalt, zincblende"):
        generate_candidates(["Na", "Cl"], ["rock-salts"])
    with pytest.raises(ValueError, match="valid symbols are H, He, Li"):
        generate_candidates(["Na", "Xx"], ["rocksalt"])
    with pytest.raises(ValueError, match="did you mean Na"):
        CandidateSource(["NA", "Cl"], ["rocksalt"])
    with pytest.raises(ValueError, match="non-negative"):
        generate_candidates(["Na", "Cl"], ["rocksalt"], n=-1)


def test_candidate_source_yields_the_same_records() -> None:
    source = CandidateSource(ELEMENTS, DEFAULT_PROTOTYPES, n=30, seed=2)
    expected = ids(generate_candidates(ELEMENTS, DEFAULT_PROTOTYPES, n=30, seed=2))
    assert ids(source) == expected == ids(source)
    assert source.targets == ()
    reordered = CandidateSource(ELEMENTS[::-1], DEFAULT_PROTOTYPES[::-1], n=30, seed=2)
    assert source.fingerprint() == reordered.fingerprint()
    assert source.fingerprint() != CandidateSource(ELEMENTS, DEFAULT_PROTOTYPES, n=30, seed=3).fingerprint()
    assert "n=30" in source.describe()
