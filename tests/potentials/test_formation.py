"""Formation energy on Materials Project's scale from a total energy and MP's elemental references."""

from __future__ import annotations

import json

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from pymatgen.core import Composition, Structure

from hybridmat.potentials.formation import formation_energy_per_atom, load_elemental_refs
from tests.conftest import shared_file

REFS = {"Li": -1.9, "O": -4.9, "Fe": -8.5}


def test_formation_energy_subtracts_the_elemental_references() -> None:
    # Li2O, 3 atoms, total energy −16.0 eV: (−16.0 − (2·−1.9 + −4.9)) / 3 = −2.4333 eV/atom
    assert formation_energy_per_atom(Composition("Li2O"), -16.0, REFS) == pytest.approx(-2.43333, abs=1e-5)
    # the same per atom for a doubled cell
    assert formation_energy_per_atom(Composition("Li4O2"), -32.0, REFS) == pytest.approx(-2.43333, abs=1e-5)


def test_an_element_at_its_reference_energy_has_zero_formation_energy() -> None:
    assert formation_energy_per_atom(Composition("Fe4"), 4 * -8.5, REFS) == pytest.approx(0.0)


def test_a_missing_reference_names_the_element() -> None:
    with pytest.raises(KeyError, match="Og"):
        formation_energy_per_atom(Composition("OgO"), -10.0, REFS)


@pytest.mark.integration
def test_mp_references_reproduce_mp_formation_energies_of_known_compounds() -> None:
    """MP's own reference entries give zero for the elements, and e.g. O2 is about −4.9 eV/atom (MP2020)."""
    refs = load_elemental_refs(shared_file("mp_elemental_refs", "mp_elemental_reference_entries.json.gz"))
    assert len(refs) == 89
    assert refs["O"] == pytest.approx(-4.95, abs=0.05)
    assert formation_energy_per_atom(Composition("Si8"), 8 * refs["Si"], refs) == 0.0


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("mp_id", ["mp-22862", "mp-1265", "mp-2741"])  # NaCl, MgO, CaF2
def test_chgnet_formation_energy_matches_dft_without_correcting_again(mp_id: str) -> None:
    """CHGNet learned MP2020-corrected energies: subtracting the references alone lands on the DFT label."""
    from hybridmat.potentials.base import load_potential
    from hybridmat.potentials.relax import relax_structure

    table = pq.read_table(shared_file("mp_cgcnn36k", "mp_cgcnn36k.parquet"),
                          columns=["id", "structure", "e_form_eV_per_atom"])
    row = table.filter(pc.equal(table.column("id"), mp_id)).to_pylist()[0]
    result = relax_structure(Structure.from_dict(json.loads(row["structure"])), load_potential("chgnet").calculator())
    e_form = formation_energy_per_atom(result.structure.composition,
                                       result.energy_per_atom * len(result.structure), load_elemental_refs())
    assert e_form == pytest.approx(row["e_form_eV_per_atom"], abs=0.1)
