"""CHGNet (Deng et al., Nat. Mach. Intell. 5, 1031 (2023)): the default potential; weights ship in the wheel.

``chgnet`` 0.4 loads its bundled CHGNet 0.3.0 weights (BSD-3) without network access. CHGNet learned the
MPtrj energies *with* MP2020 corrections, so its energies are on MP's corrected scale (``energy_scale =
"mp2020"``): the formation energy is the total energy minus MP's elemental references, nothing more.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import Any

from hybridmat.potentials.base import EnergyScale, Potential


class CHGNetPotential(Potential):
    """The pretrained CHGNet model, loaded once and shared by every calculator this object hands out."""

    name = "chgnet"
    version = "0.3.0"
    energy_scale: EnergyScale = "mp2020"
    #: Std of its relaxed formation energies against DFT on prototype candidates that match a held-out MP entry
    #: (``hybridmat bench relax``, the funnel's use case; README "Discovery from unrelaxed inputs").
    e_form_std = 0.14

    def __init__(self, device: str = "cpu") -> None:
        from chgnet.model import CHGNet

        # chgnet's own tensor-copy warning on every call says nothing to a user of hybridmat.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"chgnet\.")
        self.device = device
        with contextlib.redirect_stdout(io.StringIO()):  # chgnet prints its banner whatever `verbose` says
            self.model = CHGNet.load(model_name=self.version, use_device=device, verbose=False)

    def calculator(self) -> Any:
        from chgnet.model.dynamics import CHGNetCalculator

        # An isolated atom (no neighbour within CHGNet's 5 Å graph cutoff) is an error, not a warning: the
        # energy would be meaningless. CHGNetCalculator prints its device on every construction.
        with contextlib.redirect_stdout(io.StringIO()):
            return CHGNetCalculator(model=self.model, use_device=self.device, on_isolated_atoms="error")
