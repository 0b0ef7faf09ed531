"""Relaxation of one structure through the potential interface, with ASE's EMT as a cheap potential."""

from __future__ import annotations

import pytest
from pymatgen.core import Lattice, Structure

from hybridmat.console import UserError
from hybridmat.potentials.base import Potential, load_potential, potential_class
from hybridmat.potentials.relax import RelaxationError, RelaxSettings, min_distance, relax_structure


def copper(a: float) -> Structure:
    """Conventional fcc copper (4 sites); EMT's equilibrium lattice constant is about 3.59 Å."""
    return Structure(Lattice.cubic(a), ["Cu"] * 4, [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])


@pytest.fixture(scope="module")
def emt() -> Potential:
    return load_potential("emt")


def test_relaxation_restores_the_equilibrium_lattice(emt: Potential) -> None:
    strained = copper(3.80)
    result = relax_structure(strained, emt.calculator(), RelaxSettings(fmax=0.01))
    assert result.converged and result.max_force < 0.01
    assert result.structure.lattice.a == pytest.approx(3.59, abs=0.02)
    assert result.volume_change == pytest.approx(result.structure.volume / strained.volume - 1)
    assert result.volume_change < -0.1
    assert result.energy_per_atom < result.initial_energy_per_atom
    assert result.steps > 0 and len(result.structure) == 4


def test_running_out_of_steps_is_a_result_not_converged(emt: Potential) -> None:
    result = relax_structure(copper(3.9), emt.calculator(), RelaxSettings(max_steps=2))
    assert not result.converged and result.steps == 2 and result.max_force > 0.05


def test_close_atoms_are_refused_before_relaxing(emt: Potential) -> None:
    squeezed = Structure(Lattice.cubic(3.6), ["Cu", "Cu"], [[0, 0, 0], [0.1, 0, 0]])
    assert min_distance(squeezed) == pytest.approx(0.36)
    with pytest.raises(RelaxationError, match="close atoms.*before"):
        relax_structure(squeezed, emt.calculator())


@pytest.mark.parametrize(("settings", "reason"), [
    (RelaxSettings(min_energy_per_atom=10.0), "derailed"),
    (RelaxSettings(time_limit_s=1e-9), "time limit"),
])
def test_guards_name_their_reason(emt: Potential, settings: RelaxSettings, reason: str) -> None:
    with pytest.raises(RelaxationError) as caught:
        relax_structure(copper(3.8), emt.calculator(), settings)
    assert caught.value.reason == reason


def test_a_failing_calculator_is_a_potential_error(emt: Potential) -> None:
    lithium = Structure(Lattice.cubic(3.5), ["Li", "Li"], [[0, 0, 0], [0.5, 0.5, 0.5]])  # EMT has no Li
    with pytest.raises(RelaxationError) as caught:
        relax_structure(lithium, emt.calculator())
    assert caught.value.reason == "potential" and "Li" in caught.value.detail


def test_registry_describes_without_loading_and_refuses_unknown_names() -> None:
    assert potential_class("chgnet").describe() == {"name": "chgnet", "version": "0.3.0", "energy_scale": "mp2020"}
    assert potential_class("emt").describe()["energy_scale"] is None
    with pytest.raises(UserError, match="unknown potential 'mace'.*chgnet, emt"):
        load_potential("mace")


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="fmax"):
        RelaxSettings(fmax=0)
