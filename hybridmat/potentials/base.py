"""The interface every universal interatomic potential implements, and the registry that finds them by name.

A potential is anything that hands out an ASE calculator (energy, forces, stress). Adding one (SevenNet-0
from ``sevenn``, MACE from a local model file) is one module with a :class:`Potential` subclass and one
line in :data:`POTENTIALS`.

``energy_scale`` says what its energies can be compared with, and so how a formation energy is made
(:mod:`hybridmat.potentials.formation`):

- ``"mp2020"``: trained on MPtrj energies that already include Materials Project's MP2020 anion and U
  corrections (CHGNet). The formation energy is the total energy minus MP's elemental references, with no
  correction applied again (applying ``MaterialsProject2020Compatibility`` on top counts them twice).
- ``None``: energies on the potential's own scale (EMT); no formation energy on MP's scale is reported.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import Any, Literal

from hybridmat.console import UserError

EnergyScale = Literal["mp2020"] | None

#: Potential name → ``module:class``; imported only when asked for (each pulls in its own package).
POTENTIALS: dict[str, str] = {
    "chgnet": "hybridmat.potentials.chgnet:CHGNetPotential",
    "emt": "hybridmat.potentials.emt:EMTPotential",
}


class Potential(ABC):
    """A universal interatomic potential: a name, a version, its energy scale and an ASE calculator."""

    name: str
    #: The model's version: a rerun must match it to keep the shards already written.
    version: str
    energy_scale: EnergyScale = None
    #: Its formation energies' error against DFT as a standard deviation (eV/atom), measured by
    #: ``hybridmat bench relax``; weighs it against the ensemble in a funnel (None: reported, not combined).
    e_form_std: float | None = None

    @abstractmethod
    def __init__(self, device: str = "cpu") -> None:
        """Load the model on ``device`` (``cpu`` or ``cuda``), once."""

    @abstractmethod
    def calculator(self) -> Any:
        """A fresh ASE calculator (energies in eV, forces in eV/Å, stress in eV/Å³)."""

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """Name, version and energy scale, as written in a manifest (no weights loaded)."""
        return {"name": cls.name, "version": cls.version, "energy_scale": cls.energy_scale}


def potential_class(name: str) -> type[Potential]:
    """The class registered as ``name`` (imports its module, loads no weights)."""
    if name not in POTENTIALS:
        raise UserError(f"unknown potential {name!r}; choose one of {', '.join(sorted(POTENTIALS))}")
    module_name, class_name = POTENTIALS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def load_potential(name: str, device: str = "cpu") -> Potential:
    """The potential registered as ``name``, loaded on ``device``."""
    return potential_class(name)(device=device)
