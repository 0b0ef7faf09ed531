"""E_hull per chemical system against pymatgen's PhaseDiagram built directly over all phases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition

from hybridmat.ranking.hull import HullReference, read_hull_reference

# Formation energies (eV/atom) from standard enthalpies of formation: Li2O -597.9 kJ/mol over 3 atoms,
# Li2O2 -634.3 kJ/mol over 4, Na2O -418 kJ/mol over 3; a Li2O polymorph above the ground state.
REFERENCE = {"Li": 0.0, "O2": 0.0, "Li2O": -2.066, "Li2O2": -1.643, "Na2O": -1.444}
POLYMORPH = ("Li2O", -1.9)
#: Candidates and their predicted e_form: above the hull (LiO2, Li3O), below it (Li2O3), a ternary
#: whose hull comes from two binary subsystems (LiNaO), a system without reference phases (NaCl).
CANDIDATES = {"LiO2": -1.0, "Li2O3": -1.5, "Li3O": -1.0, "LiNaO": -1.9, "NaCl": -2.1, "Li2O": -2.0}


def _pymatgen_e_hull() -> dict[str, float]:
    entries = [PDEntry(Composition(element), 0.0) for element in ("Li", "O", "Na", "Cl")]
    entries += [PDEntry(Composition(f), e * Composition(f).num_atoms) for f, e in [*REFERENCE.items(), POLYMORPH]]
    diagram = PhaseDiagram(entries)
    return {formula: diagram.get_decomp_and_e_above_hull(PDEntry(Composition(formula),
                                                                 e * Composition(formula).num_atoms),
                                                         allow_negative=True)[1]
            for formula, e in CANDIDATES.items()}


def test_e_hull_matches_pymatgen_including_below_the_hull() -> None:
    formulas, energies = zip(*[*REFERENCE.items(), POLYMORPH])
    reference = HullReference(formulas, energies)
    ours = dict(zip(CANDIDATES, reference.e_above_hull(list(CANDIDATES), list(CANDIDATES.values()))))
    expected = _pymatgen_e_hull()
    assert ours == pytest.approx(expected, abs=1e-9)
    assert ours["Li2O3"] < 0 < ours["LiO2"]  # Li2O3 lies below the Li2O2-O2 tie line
    assert ours["NaCl"] == pytest.approx(-2.1)  # only the elements at 0 eV/atom
    assert ours["Li2O"] == pytest.approx(0.066)  # against the lowest Li2O, not the polymorph
    assert len(reference) == len(REFERENCE)


def test_reference_table_with_a_split(tmp_path: Path) -> None:
    table = pa.table({"id": ["r1", "r2", "r3"], "formula": ["Li2O", "Li2O2", "LiO2"],
                      "e_form_eV_per_atom": [-2.066, -1.643, -5.0]})
    pq.write_table(table, tmp_path / "ref.parquet")
    (tmp_path / "splits.json").write_text(json.dumps({"s": {"train": ["r1", "r2"], "test": ["r3"]}}))
    reference = read_hull_reference(f"{tmp_path / 'ref.parquet'}?split=s/train")
    assert len(reference) == 2  # LiO2 is a test row, not a known phase
    assert reference.e_above_hull(["LiO2"], [-1.0])[0] == pytest.approx(_pymatgen_e_hull()["LiO2"])
    with pytest.raises(ValueError, match="has parts"):
        read_hull_reference(f"{tmp_path / 'ref.parquet'}?split=s/valid")
    pq.write_table(table.rename_columns(["id", "formula", "energy"]), tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="no formation energy"):
        read_hull_reference(str(tmp_path / "bad.parquet"))


def test_empty_input() -> None:
    assert HullReference(["Li2O"], [-2.0]).hull_energies([]).shape == (0,)
    assert np.isnan(HullReference([], []).e_above_hull(["Li"], [np.nan])[0])


def test_coverage_counts_known_compounds_and_flags_missing_binaries(tmp_path: Path) -> None:
    formulas, energies = zip(*[*REFERENCE.items(), POLYMORPH])
    reference = HullReference(formulas, energies)
    queries = ["Li2O3", "LiNaO", "NaCl", "Li"]
    hull_energy, phases, incomplete = reference.coverage(queries)
    np.testing.assert_allclose(hull_energy, reference.hull_energies(queries))
    # Li-O knows Li2O and LiO (Li2O2; the polymorph is not a second phase); Li-Na-O adds Na2O; Na-Cl knows nothing
    assert phases.tolist() == [2, 3, 0, 0]
    assert incomplete.tolist() == [False, True, True, False]  # Li-Na and Na-Cl have no known compound
    assert [a.shape for a in reference.coverage([])] == [(0,), (0,), (0,)]
    table = pa.table({"id": ["r1", "r2"], "formula": ["Li2O", "Na2O"], "e_form": [-2.066, -1.444]})
    pq.write_table(table, tmp_path / "all.parquet")
    assert len(read_hull_reference(str(tmp_path / "all.parquet"))) == 2  # no ?split=: every known phase


def test_a_table_is_read_once_until_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "phases.parquet"
    pq.write_table(pa.table({"formula": ["Li2O"], "e_form": [-2.066]}), path)
    first = read_hull_reference(str(path))
    assert read_hull_reference(str(path)) is first
    pq.write_table(pa.table({"formula": ["Li2O", "Na2O"], "e_form": [-2.066, -1.444]}), path)
    assert len(read_hull_reference(str(path))) == 2
