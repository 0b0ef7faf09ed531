"""Relaxation of one structure: ASE FIRE on a Fréchet cell filter, with guards that name what went wrong.

The protocol is Matbench Discovery's IS2RE one: positions and cell relax together (``FrechetCellFilter``)
until every generalised force is below ``fmax`` (0.05 eV/Å) or ``max_steps`` (500) FIRE steps have run.
Running out of steps is a result (``converged = False``); a relaxation that cannot be trusted is a
:class:`RelaxationError` with a reason, which the calling stage writes to its error table:

- ``close atoms``: two atoms closer than ``min_distance`` (0.5 Å) before or after the relaxation;
- ``derailed``: an energy below ``min_energy_per_atom`` (−15 eV/atom) at any step, which no real
  crystal has and which means the potential has left its training domain;
- ``time limit``: the relaxation ran longer than ``time_limit_s``;
- ``potential``: the calculator raised (e.g. an isolated atom, a non-finite force).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from pymatgen.core import Structure


@dataclass(frozen=True)
class RelaxSettings:
    """How one structure is relaxed and when the result is rejected."""

    fmax: float = 0.05
    max_steps: int = 500
    min_distance: float = 0.5
    min_energy_per_atom: float = -15.0
    time_limit_s: float = 600.0

    def __post_init__(self) -> None:
        if self.fmax <= 0 or self.max_steps < 1 or self.time_limit_s <= 0:
            raise ValueError(f"fmax and time_limit_s must be positive and max_steps ≥ 1, got {self}")

    def as_dict(self) -> dict[str, Any]:
        """The settings as written in a manifest."""
        return asdict(self)


@dataclass(frozen=True)
class RelaxResult:
    """A finished relaxation: the relaxed structure, its energy and how the optimiser got there."""

    structure: Structure
    energy_per_atom: float
    initial_energy_per_atom: float
    steps: int
    converged: bool
    #: Largest force (eV/Å) at the end, the cell's generalised force included: what ``fmax`` is compared with.
    max_force: float
    volume_change: float
    seconds: float


class RelaxationError(Exception):
    """A relaxation whose result cannot be trusted; ``reason`` is one of the guards in the module docstring."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def min_distance(structure: Structure) -> float:
    """The shortest distance between two atoms, periodic images included (∞ for one atom alone in a big cell)."""
    if len(structure) == 1:
        lattice = structure.lattice
        return float(min(np.linalg.norm(lattice.matrix, axis=1)))
    distances = structure.distance_matrix
    return float(distances[~np.eye(len(structure), dtype=bool)].min())


def _check_distance(structure: Structure, limit: float, when: str) -> None:
    shortest = min_distance(structure)
    if shortest < limit:
        raise RelaxationError("close atoms", f"atoms {shortest:.2f} Å apart {when} relaxation (limit {limit} Å)")


def relax_structure(structure: Structure, calculator: Any, settings: RelaxSettings = RelaxSettings()) -> RelaxResult:
    """Relax positions and cell of ``structure`` with ``calculator`` (an ASE calculator); see the module docstring."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE
    from pymatgen.io.ase import AseAtomsAdaptor

    _check_distance(structure, settings.min_distance, "before")
    started = time.perf_counter()
    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = calculator
    n_atoms = len(atoms)
    cell_filter = FrechetCellFilter(atoms)
    optimizer = FIRE(cell_filter, logfile=None)
    try:
        initial_energy = float(atoms.get_potential_energy()) / n_atoms
        converged = False
        for converged in optimizer.irun(fmax=settings.fmax, steps=settings.max_steps):  # noqa: B007 (read after)
            energy = float(atoms.get_potential_energy()) / n_atoms
            if not np.isfinite(energy) or energy < settings.min_energy_per_atom:
                raise RelaxationError("derailed", f"energy {energy:.2f} eV/atom after {optimizer.nsteps} steps "
                                                  f"(limit {settings.min_energy_per_atom} eV/atom)")
            if time.perf_counter() - started > settings.time_limit_s:
                raise RelaxationError("time limit", f"still running after {optimizer.nsteps} steps and "
                                                    f"{settings.time_limit_s:.0f} s")
        forces = cell_filter.get_forces()  # atoms' forces and the cell's (scaled stress), as FIRE saw them
    except RelaxationError:
        raise
    except Exception as error:  # noqa: BLE001 - any failure of a third-party calculator is this row's error
        raise RelaxationError("potential", f"{type(error).__name__}: {error}") from None
    relaxed = AseAtomsAdaptor.get_structure(atoms)
    _check_distance(relaxed, settings.min_distance, "after")
    return RelaxResult(
        structure=relaxed,
        energy_per_atom=energy,
        initial_energy_per_atom=initial_energy,
        steps=int(optimizer.nsteps),
        converged=bool(converged),
        max_force=float(np.linalg.norm(forces, axis=1).max()),
        volume_change=float(relaxed.volume / structure.volume - 1.0),
        seconds=time.perf_counter() - started,
    )
