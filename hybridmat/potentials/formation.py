"""Formation energy per atom on Materials Project's scale, from a total energy and MP's elemental references.

``e_form = (E − Σ_el n_el · μ_el) / N`` with ``μ_el`` the energy per atom of the element's lowest-energy MP
entry (GGA/GGA+U mixing scheme, ``../shared/data/mp_elemental_refs``). The total energy ``E`` must be on
the scale of those references, which is what a potential's ``energy_scale`` says:

- CHGNet (``"mp2020"``): MPtrj energies with MP2020 corrections already in; subtract the references
  directly. ``hybridmat bench relax`` measures it against the DFT labels of relaxed ``full/test`` structures
  and matching prototypes, once this way and once with ``MaterialsProject2020Compatibility`` applied on top
  (the corrections counted twice, several times the error; figures in the README).
- A potential trained on uncorrected energies would need those corrections first; none is registered.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from pymatgen.core import Composition

from hybridmat.data.shared import SHARED_DATA

ELEMENTAL_REFS = SHARED_DATA / "mp_elemental_refs" / "mp_elemental_reference_entries.json.gz"


@lru_cache(maxsize=4)
def load_elemental_refs(path: Path = ELEMENTAL_REFS) -> dict[str, float]:
    """Element symbol → energy per atom (eV) of MP's elemental reference entry."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: the MP elemental references live in "
                                "../shared/data/mp_elemental_refs (or set HYBRIDMAT_SHARED_DATA)")
    with gzip.open(path, "rt") as handle:
        entries = json.load(handle)
    return {
        symbol: entry["energy"] / Composition(entry["composition"]).num_atoms
        for symbol, entry in entries.items()
    }


def formation_energy_per_atom(composition: Composition, energy: float, refs: Mapping[str, float]) -> float:
    """Formation energy per atom (eV) of ``composition`` with total energy ``energy`` (eV, whole cell).

    Raises ``KeyError`` naming the element when ``refs`` has no reference for it.
    """
    composition = Composition(composition)
    missing = [el.symbol for el in composition if el.symbol not in refs]
    if missing:
        raise KeyError(f"no elemental reference for {', '.join(missing)}")
    reference = sum(amount * refs[el.symbol] for el, amount in composition.items())
    return (energy - reference) / composition.num_atoms
