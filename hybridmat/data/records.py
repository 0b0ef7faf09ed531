"""The unit of data that flows through hybridmat: a structure with an id, targets and provenance.

Every source yields, for each input row, either a :class:`StructureRecord` or a :class:`RecordError`
(never both, never neither), so that inputs = rows + errors holds at every stage.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from pymatgen.core import Structure

#: Canonical target names and the column names they are read from when no mapping is given.
TARGET_ALIASES: dict[str, tuple[str, ...]] = {
    "e_form": ("e_form", "e_form_eV_per_atom", "formation_energy_per_atom"),
    "band_gap": ("band_gap", "band_gap_eV", "gap pbe"),
    "e_above_hull": ("e_above_hull", "energy_above_hull"),
}


@dataclass(frozen=True)
class StructureRecord:
    """One crystal: a unique ``id``, its pymatgen ``structure``, optional ``targets`` and ``provenance``.

    ``targets`` maps canonical names (``e_form`` in eV/atom, ``band_gap`` in eV, ...) to floats;
    a label that is not known is absent (or NaN when a source keeps unlabelled rows).
    """

    id: str
    structure: Structure
    targets: Mapping[str, float] = field(default_factory=dict)
    provenance: str = ""

    @property
    def formula(self) -> str:
        """Reduced formula, e.g. ``"Li2O"``."""
        return self.structure.composition.reduced_formula


@dataclass(frozen=True)
class RecordError:
    """An input row that could not become a result: its ``id``, the ``stage`` that failed, and why."""

    id: str
    stage: str
    reason: str


SourceItem = StructureRecord | RecordError


def check_targets(record: StructureRecord, required: Iterable[str]) -> RecordError | None:
    """Return an error if any ``required`` target is missing or not a finite number, else ``None``."""
    for name in required:
        value = record.targets.get(name)
        if value is None:
            return RecordError(record.id, "targets", f"target '{name}' is missing")
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return RecordError(record.id, "targets", f"target '{name}' is not a finite number: {value!r}")
    return None


def drop_duplicate_ids(items: Iterable[SourceItem]) -> Iterator[SourceItem]:
    """Pass items through, turning every repeat of an already-seen id into a ``duplicate`` error."""
    first_seen: dict[str, int] = {}
    for position, item in enumerate(items):
        if item.id in first_seen:
            yield RecordError(
                item.id, "duplicate", f"id already used by input row {first_seen[item.id]}; kept the first"
            )
            continue
        first_seen[item.id] = position
        yield item
