"""Write structure records as a table that :class:`~hybridmat.data.tables.TableSource` reads back."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa

from hybridmat.atomic_io import atomic_write_bytes, atomic_write_parquet
from hybridmat.data.records import StructureRecord


def records_to_table(records: Iterable[StructureRecord]) -> pa.Table:
    """Columns ``id, formula, n_sites, structure`` (pymatgen dict JSON), ``provenance`` and targets."""
    records = list(records)
    target_names = sorted({name for record in records for name in record.targets})
    columns: dict[str, list] = {
        "id": [r.id for r in records],
        "formula": [r.formula for r in records],
        "n_sites": [len(r.structure) for r in records],
        "structure": [json.dumps(r.structure.as_dict()) for r in records],
        "provenance": [r.provenance for r in records],
    }
    for name in target_names:
        columns[name] = [float(r.targets.get(name, float("nan"))) for r in records]
    return pa.table(columns)


def write_structure_table(records: Iterable[StructureRecord], path: Path) -> int:
    """Write records atomically to ``path`` (``.parquet`` or ``.jsonl``); return the number written."""
    path = Path(path)
    table = records_to_table(records)
    if path.suffix == ".parquet":
        atomic_write_parquet(table, path)
    elif path.suffix in {".jsonl", ".json"}:
        lines = (json.dumps(row) for row in table.to_pylist())
        atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
    else:
        raise ValueError(f"cannot write {path}: use a .parquet or .jsonl file name")
    return table.num_rows
