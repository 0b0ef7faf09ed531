"""Physical sanity checks on a structure before it is featurized.

Each check returns a reason string (what is wrong and what to do) or ``None``. They are cheap and run
before the neighbour search, because a degenerate lattice would make that search enumerate an enormous
number of periodic images.
"""

from __future__ import annotations

import numpy as np
from pymatgen.core import Structure

#: Atoms closer than this (Å) are treated as overlapping: no real crystal has bonds this short.
MIN_INTERATOMIC_DISTANCE = 0.5
#: A cell thinner than this (Å) along any lattice direction puts every atom this close to its own image.
MIN_CELL_HEIGHT = MIN_INTERATOMIC_DISTANCE


def cell_heights(lattice_matrix: np.ndarray) -> np.ndarray:
    """Distances between opposite faces of the cell (Å): volume / area of each face."""
    a, b, c = lattice_matrix
    volume = abs(float(np.dot(a, np.cross(b, c))))
    areas = np.linalg.norm([np.cross(b, c), np.cross(c, a), np.cross(a, b)], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(areas > 0, volume / areas, 0.0)


def structure_problem(structure: Structure) -> str | None:
    """Why ``structure`` cannot be featurized (disorder, empty cell, degenerate lattice), or ``None``."""
    if len(structure) == 0:
        return "structure has no sites"
    if not structure.is_ordered:
        site = next(i for i, s in enumerate(structure) if not s.is_ordered)
        return (
            f"site {site} is disordered / partially occupied ({structure[site].species}); "
            "order the structure first (e.g. pymatgen OrderDisorderedStructureTransformation)"
        )
    matrix = structure.lattice.matrix
    if not (np.isfinite(matrix).all() and np.isfinite(structure.frac_coords).all()):
        return "lattice or coordinates contain NaN or infinity"
    heights = cell_heights(matrix)
    if heights.min() < MIN_CELL_HEIGHT:
        return (
            f"lattice is degenerate: cell volume {structure.volume:.3g} Å³, thinnest cell height "
            f"{heights.min():.3g} Å < {MIN_CELL_HEIGHT} Å (every atom would overlap its own image)"
        )
    return None


def overlap_problem(min_distance: float) -> str | None:
    """A reason when the shortest interatomic distance (Å) means overlapping atoms, else ``None``."""
    if min_distance < MIN_INTERATOMIC_DISTANCE:
        return (
            f"overlapping atoms: shortest interatomic distance {min_distance:.3f} Å "
            f"< {MIN_INTERATOMIC_DISTANCE} Å; check the coordinates and the lattice"
        )
    return None
