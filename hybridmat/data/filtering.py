"""The plausibility filter as a stage: a source in, the kept structures and a table of every rejected one out.

``hybridmat filter SOURCE --out FILE`` and ``hybridmat candidates`` write the kept structures to ``FILE``
(a structure table, readable as a source) and every other input row to ``<FILE stem>.rejected.parquet``
with its id, formula, prototype, the rule that failed (or the source error's stage for an unreadable row)
and the numbers that failed it, so inputs = kept + rejected always holds. Both files are written atomically.

A screen job with a ``filter:`` section filters on the fly (:class:`~hybridmat.data.plausibility.FilteredSource`):
rejected rows are rows of its ``errors.parquet`` with stage ``filter``, and :func:`write_screen_rejected`
copies them to ``rejected.parquet`` with the rule in a column of its own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hybridmat.atomic_io import atomic_write_parquet
from hybridmat.data.plausibility import PlausibilitySettings, assess_items
from hybridmat.data.records import RecordError, SourceItem, StructureRecord
from hybridmat.data.writers import write_structure_table

REJECTED_SCHEMA = pa.schema([
    ("id", pa.string()), ("formula", pa.string()), ("prototype", pa.string()),
    ("rule", pa.string()), ("reason", pa.string()),
])


@dataclass
class FilterCounts:
    """How many rows were read, kept, and rejected by each rule."""

    inputs: int = 0
    kept: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        """One line: kept of inputs, then the rejections per rule (most first)."""
        per_rule = ", ".join(f"{rule} {count:,}" for rule, count in self.rejected.most_common())
        return f"kept {self.kept:,} of {self.inputs:,}" + (f"; rejected: {per_rule}" if per_rule else "")


def rejected_path(out: Path) -> Path:
    """Where the rejected rows of a filter writing ``out`` go: ``<out stem>.rejected.parquet`` beside it."""
    out = Path(out)
    return out.with_name(f"{out.stem}.rejected.parquet")


def filter_records(items: Iterable[SourceItem], out: Path,
                   settings: PlausibilitySettings = PlausibilitySettings()) -> FilterCounts:
    """Assess every item, write the kept records to ``out`` and the rest to :func:`rejected_path`."""
    counts, kept, rejected = FilterCounts(), [], []
    for item, verdict in assess_items(items, settings):
        counts.inputs += 1
        if verdict.kept and isinstance(item, StructureRecord):
            kept.append(item)
            continue
        rule = verdict.rule or "source"
        counts.rejected[rule] += 1
        rejected.append({"id": verdict.id, "formula": verdict.formula, "prototype": verdict.prototype,
                         "rule": rule, "reason": verdict.reason if not isinstance(item, RecordError) else item.reason})
    counts.kept = write_structure_table(kept, out)
    atomic_write_parquet(pa.Table.from_pylist(rejected, schema=REJECTED_SCHEMA), rejected_path(out))
    return counts


def write_screen_rejected(errors_file: Path, out: Path) -> int:
    """Copy the ``filter`` rows of a screen's ``errors_file`` to ``out`` (id, rule, reason); return how many."""
    errors = pq.read_table(errors_file, columns=["id", "stage", "reason"])
    rows = errors.filter(pc.equal(errors["stage"], "filter")).to_pylist()
    split = [row["reason"].partition(": ") for row in rows]
    table = pa.table({"id": pa.array([row["id"] for row in rows], pa.string()),
                      "rule": pa.array([rule for rule, _, _ in split], pa.string()),
                      "reason": pa.array([reason for _, _, reason in split], pa.string())})
    atomic_write_parquet(table, out)
    return table.num_rows
