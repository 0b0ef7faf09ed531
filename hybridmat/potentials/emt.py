"""ASE's effective-medium theory (Al, Cu, Ag, Au, Ni, Pd, Pt; H, C, N, O as adsorbates): a cheap potential.

Not a universal potential and not on Materials Project's energy scale (``energy_scale = None``: no
formation energy); it exists to relax elemental metals and alloys in seconds, and to show that any ASE
calculator fits behind :class:`~hybridmat.potentials.base.Potential`.
"""

from __future__ import annotations

from typing import Any

import ase

from hybridmat.potentials.base import Potential


class EMTPotential(Potential):
    """ASE's EMT calculator (CPU only; ``device`` is accepted and ignored)."""

    name = "emt"
    version = f"ase-{ase.__version__}"

    def __init__(self, device: str = "cpu") -> None:
        self.device = device

    def calculator(self) -> Any:
        from ase.calculators.emt import EMT

        return EMT()
