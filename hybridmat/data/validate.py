"""Physical sanity checks on a structure before it is featurized, and on its target labels.

Each check returns a reason string (what is wrong and what to do) or ``None``. They are cheap and run
before the neighbour search, because a degenerate lattice would make that search enumerate an enormous
number of periodic images.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np
from pymatgen.core import Structure

from hybridmat.data.records import RecordError, SourceItem
from hybridmat.data.source import Source, hash_strings

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


#: Physical range of each known target (inclusive); a label outside it is a unit or parsing error, not a
#: material (the most unstable known compounds are a few eV/atom above their hull, the widest gaps ~14 eV).
#: Override per source with the ``ranges=`` source-string option (``ranges=band_gap:0:30``).
TARGET_RANGES: dict[str, tuple[float, float]] = {
    "e_form": (-10.0, 10.0),        # eV/atom
    "e_above_hull": (-10.0, 10.0),  # eV/atom
    "band_gap": (0.0, 20.0),        # eV
}
TARGET_UNITS = {"e_form": "eV/atom", "e_above_hull": "eV/atom", "band_gap": "eV"}


def clip_to_target_range(values: np.ndarray, name: str) -> np.ndarray:
    """``values`` of target ``name`` clipped to its physical range (unchanged for a target without one): a
    regression head can predict a negative band gap, and the nearest physical value is never further from the truth."""
    values = np.asarray(values, dtype=np.float64)
    return np.clip(values, *TARGET_RANGES[name]) if name in TARGET_RANGES else values


def clip_to_target_ranges(values: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """``(n, T)`` predictions of targets ``names``, each column clipped with :func:`clip_to_target_range`."""
    values = np.array(values, dtype=np.float64)
    for t, name in enumerate(names):
        values[:, t] = clip_to_target_range(values[:, t], name)
    return values


def parse_target_ranges(text: str) -> dict[str, tuple[float, float]]:
    """``"band_gap:0:30,e_form:-5:5"`` as ``{name: (low, high)}``; ``ValueError`` for a malformed entry."""
    ranges: dict[str, tuple[float, float]] = {}
    for entry in filter(None, (item.strip() for item in text.split(","))):
        name, *bounds = entry.split(":")
        try:
            low, high = (float(bound) for bound in bounds)
        except ValueError:
            raise ValueError(f"range {entry!r}: write NAME:LOW:HIGH with two numbers, e.g. band_gap:0:30") from None
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"range {entry!r}: LOW and HIGH must be finite with LOW < HIGH")
        ranges[name] = (low, high)
    return ranges


def target_range_problem(targets: Mapping[str, float | None],
                         ranges: Mapping[str, tuple[float, float]] = TARGET_RANGES) -> tuple[str, str] | None:
    """``(target, reason)`` for the first finite target value outside its physical range, else ``None``
    (missing and non-finite values are :func:`hybridmat.data.records.check_targets`' business)."""
    for name, value in targets.items():
        if name not in ranges or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        low, high = ranges[name]
        if not low <= value <= high:
            unit = f" {TARGET_UNITS[name]}" if name in TARGET_UNITS else ""
            return name, (f"target '{name}' = {value:g}{unit} is outside its physical range [{low:g}, {high:g}]"
                          f"{unit}; check the units, or widen it with ?ranges={name}:LOW:HIGH on the source")
    return None


class TargetRangeSource(Source):
    """``source`` with each record whose target lies outside its physical range turned into a ``targets``
    :class:`RecordError` (id, value, range), so a unit slip cannot train a model with exit status 0."""

    def __init__(self, source: Source, ranges: Mapping[str, tuple[float, float]] | None = None) -> None:
        self.source = source
        self.overridden = dict(ranges or {})
        self.ranges = {**TARGET_RANGES, **self.overridden}
        self.targets = source.targets

    def _checked(self, items: Iterable[SourceItem]) -> Iterator[SourceItem]:
        for item in items:
            problem = None if isinstance(item, RecordError) else target_range_problem(item.targets, self.ranges)
            yield item if problem is None else RecordError(item.id, "targets", problem[1])

    def __iter__(self) -> Iterator[SourceItem]:
        return self._checked(iter(self.source))

    def iter_range(self, start: int, stop: int) -> Iterator[SourceItem]:
        return self._checked(self.source.iter_range(start, stop))

    def fingerprint(self) -> str:
        """The wrapped source's, changed only by overridden ranges (default ranges keep existing stores)."""
        inner = self.source.fingerprint()
        if not self.overridden:
            return inner
        return hash_strings(inner, *(f"{name}:{low!r}:{high!r}"
                                     for name, (low, high) in sorted(self.overridden.items())))

    def count(self) -> int | None:
        return self.source.count()

    def describe(self) -> str:
        return self.source.describe()
