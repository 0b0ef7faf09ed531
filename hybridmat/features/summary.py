"""Human-readable summaries printed at the end of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from rich.console import Group
from rich.table import Table

from hybridmat.features.store import ERRORS


def store_summary(out: Path, manifest: dict[str, Any], seconds: float | None = None) -> Group:
    """A table of counts, settings and throughput for a finished feature store, plus sample errors."""
    counts = manifest["counts"]
    table = Table(title=f"feature store {out}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("source", manifest["source"]["spec"])
    table.add_row("input hash", manifest["input_hash"][:16])
    table.add_row("inputs", f"{counts['inputs']:,}")
    table.add_row("rows featurized", f"{counts['rows']:,}")
    table.add_row("errors", f"{counts['errors']:,}  {manifest.get('errors_by_stage') or ''}")
    table.add_row("shards", str(counts["shards"]))
    table.add_row("targets", ", ".join(manifest["targets"]) or "(none)")
    settings = manifest["featurizer"]
    table.add_row(
        "features",
        f"{len(manifest['composition_labels'])} {settings['composition']} composition features; "
        f"graph cutoff {settings['cutoff']} Å, {settings['max_neighbors']} nearest neighbours",
    )
    if seconds:
        table.add_row("time", f"{seconds:.1f} s ({counts['inputs'] / seconds:,.0f} inputs/s, this run)")
    parts: list[Any] = [table]
    if counts["errors"]:
        errors = pq.read_table(out / ERRORS).slice(0, 5).to_pylist()
        sample = Table(title=f"first errors (all in {out / ERRORS})")
        for column in ("id", "stage", "reason"):
            sample.add_column(column)
        for row in errors:
            sample.add_row(row["id"], row["stage"], row["reason"])
        parts.append(sample)
    return Group(*parts)
