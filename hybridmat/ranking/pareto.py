"""The Pareto front of two objectives, each minimised or maximised, in O(n log n).

Row ``i`` is on the front when no row is at least as good in both objectives and strictly better in
one. Rows with a missing (NaN) objective are never on the front.
"""

from __future__ import annotations

import numpy as np

DIRECTIONS = ("min", "max")


def parse_objectives(spec: str) -> list[tuple[str, str]]:
    """``"e_form:min,band_gap:max"`` -> ``[("e_form", "min"), ("band_gap", "max")]``."""
    objectives = []
    for item in spec.split(","):
        name, _, direction = item.strip().partition(":")
        if not name or direction not in DIRECTIONS:
            raise ValueError(f"--pareto {spec!r}: write two NAME:min or NAME:max items, e.g. e_form:min,band_gap:max")
        objectives.append((name, direction))
    if len(objectives) != 2:
        raise ValueError(f"--pareto {spec!r}: give exactly two objectives, got {len(objectives)}")
    return objectives


def pareto_front(first: np.ndarray, second: np.ndarray, directions: tuple[str, str] = ("min", "min")) -> np.ndarray:
    """Boolean mask of the non-dominated rows.

    Both objectives are turned into minimisation; rows are sorted by (first, second). A row is on the
    front when its second objective is the lowest among rows with the same first objective and strictly
    lower than every row with a strictly lower first objective.
    """
    signs = [1.0 if direction == "min" else -1.0 for direction in directions]
    a = signs[0] * np.asarray(first, dtype=np.float64)
    b = signs[1] * np.asarray(second, dtype=np.float64)
    front = np.zeros(len(a), dtype=bool)
    valid = np.flatnonzero(np.isfinite(a) & np.isfinite(b))
    if not len(valid):
        return front
    order = valid[np.lexsort((b[valid], a[valid]))]
    a_sorted, b_sorted = a[order], b[order]
    group_start = np.searchsorted(a_sorted, a_sorted, side="left")
    best_so_far = np.minimum.accumulate(b_sorted)
    best_before_group = np.where(group_start > 0, best_so_far[group_start - 1], np.inf)
    front[order] = (b_sorted == b_sorted[group_start]) & (b_sorted < best_before_group)
    return front
