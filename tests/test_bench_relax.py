"""``hybridmat bench relax``: the perturbation, the double-correction check, and the whole command on a tiny sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from hybridmat.bench.relax import METHODS, mp2020_on_top, perturb
from hybridmat.cli import app
from hybridmat.potentials.formation import formation_energy_per_atom
from tests.conftest import rocksalt, shared_file

REFS = {"Fe": -8.5, "O": -4.95}


def test_perturbation_strains_within_bounds_and_rattles_by_sigma() -> None:
    structure = rocksalt().make_supercell(2, in_place=False)
    strained = perturb(structure, np.random.default_rng(0), strain=0.05, rattle=0.0)
    deformation = np.linalg.solve(structure.lattice.matrix, strained.lattice.matrix)
    assert np.allclose(deformation, deformation.T, atol=1e-12)  # a symmetric strain, no rotation
    assert 0 < np.abs(deformation - np.eye(3)).max() <= 0.05
    assert np.allclose(strained.frac_coords, structure.frac_coords)  # no rattle: atoms follow the cell
    rattled = perturb(structure, np.random.default_rng(0), strain=0.0, rattle=0.1)
    displacement = rattled.cart_coords - structure.cart_coords
    assert displacement.std() == pytest.approx(0.1, rel=0.2) and abs(displacement.mean()) < 0.03
    assert [site.specie for site in rattled] == [site.specie for site in structure]


def test_perturbation_is_seeded() -> None:
    first = perturb(rocksalt(), np.random.default_rng(7))
    again = perturb(rocksalt(), np.random.default_rng(7))
    assert np.allclose(first.cart_coords, again.cart_coords) and first.lattice == again.lattice


def test_mp2020_on_top_subtracts_the_anion_and_u_corrections_again() -> None:
    """FeO: MP2020 adds the oxide correction and the Fe GGA/GGA+U mixing correction, both negative."""
    feo = Structure(Lattice.cubic(4.3), ["Fe"] * 4 + ["O"] * 4, rocksalt().frac_coords)
    energy_per_atom = -7.0
    direct = formation_energy_per_atom(feo.composition, energy_per_atom * 8, REFS)
    twice = mp2020_on_top(feo, energy_per_atom, REFS)
    assert twice < direct - 1.0  # -0.687 eV per O and -2.256 eV per Fe, per atom (-0.687 - 2.256) / 2
    assert twice == pytest.approx(direct + (-0.687 - 2.256) / 2, abs=0.02)


def test_an_intermetallic_gets_no_correction() -> None:
    nial = Structure(Lattice.cubic(2.88), ["Ni", "Al"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    refs = {"Ni": -5.8, "Al": -3.75}
    assert mp2020_on_top(nial, -5.3, refs) == pytest.approx(formation_energy_per_atom(nial.composition, -10.6, refs))


@pytest.mark.integration
@pytest.mark.slow
def test_bench_relax_scores_four_estimates_and_times_four_ways(tmp_path: Path) -> None:
    data = shared_file("mp_cgcnn36k", "mp_cgcnn36k.parquet")
    shared_file("mp_elemental_refs", "mp_elemental_reference_entries.json.gz")
    out = tmp_path / "figures.json"
    result = CliRunner().invoke(app, ["bench", "relax", "--n", "2", "--speed-n", "1", "--max-sites", "4",
                                      "--data", str(data), "--out", str(tmp_path / "runs"), "--json", str(out)],
                                 env={"COLUMNS": "200"})  # at 80 columns, headers wrap by the measured widths
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    for name in ("perturbed", "prototypes"):
        found = figures["sets"][name]
        assert found["inputs"] == 2 and found["relaxed"] + found["errors"] == 2
        assert set(found["methods"]) == set(METHODS)
        assert all(m["n"] == 2 and m["tp"] + m["fp"] + m["fn"] + m["tn"] == 2 for m in found["methods"].values())
    assert set(figures["speed"]) == {"struct_optimizer", "struct_optimizer_1", "ray_1", "ray_2"}
    assert all(s["relaxed"] == 1 and s["steps"] >= 0 and s["seconds"] > 0 for s in figures["speed"].values())
    assert "× StructOpt." in result.output and set(figures["batched_calls"]["seconds"]) == {"1", "8", "32"}
