"""Shared fixtures: small hand-built structures (unit tests never need ../shared)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_file(*parts: str) -> Path:
    """A file under ../shared/data, skipping the test when the shared data is not beside the repo."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared dataset not found at {path}")
    return path


ROCKSALT_FRACTIONAL = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]


def rocksalt(a: float = 5.64, cation: str = "Na", anion: str = "Cl") -> Structure:
    """Conventional rocksalt cell (8 sites: fcc cation sublattice + anions shifted by a/2)."""
    anions = [[(x + 0.5) % 1, y, z] for x, y, z in ROCKSALT_FRACTIONAL]
    return Structure(Lattice.cubic(a), [cation] * 4 + [anion] * 4, ROCKSALT_FRACTIONAL + anions)


def perovskite(a: float = 3.905) -> Structure:
    """Cubic SrTiO3 (5 sites)."""
    return Structure(
        Lattice.cubic(a),
        ["Sr", "Ti", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )


@pytest.fixture
def nacl() -> Structure:
    return rocksalt()


@pytest.fixture
def srtio3() -> Structure:
    return perovskite()
