"""The feature store: a directory of Parquet shards, a manifest and an error table.

Layout::

    DIR/manifest.json                 schema version, source + input hash, featurizer settings, counts
    DIR/shards/part-00000.parquet     features of the rows of input shard 0 that succeeded
    DIR/shards/part-00000.errors.parquet   (index, id, stage, reason) of the rows that did not
    DIR/errors.parquet                all errors, merged when the run completes

Every file is written to a temporary name and renamed, so a crash never leaves a half-written file
under a final name. A shard is complete once its ``part-*.parquet`` exists (it is renamed after its
error file), so a rerun skips complete shards and recomputes the rest. Ids are unique across the store:
when the run completes, any input row whose id an earlier row already used is moved to the error table
(stage ``duplicate``), whichever shard it was in.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hybridmat import __version__
from hybridmat.atomic_io import atomic_write_bytes, atomic_write_parquet
from hybridmat.console import UserError
from hybridmat.data.records import RecordError
from hybridmat.features.columns import ERROR_SCHEMA, errors_to_table, table_to_batch
from hybridmat.features.featurizer import FeatureBatch

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
ERRORS = "errors.parquet"
SHARDS = "shards"


class StoreMismatchError(UserError):
    """The output directory holds a store made from another input or with other settings."""


def shard_path(directory: Path, shard: int) -> Path:
    """Path of shard ``shard``'s feature file."""
    return directory / SHARDS / f"part-{shard:05d}.parquet"


def shard_errors_path(directory: Path, shard: int) -> Path:
    """Path of shard ``shard``'s error file."""
    return directory / SHARDS / f"part-{shard:05d}.errors.parquet"


def write_shard(
    directory: Path, shard: int, table: pa.Table, errors: list[tuple[int, RecordError]]
) -> None:
    """Commit one shard: its error file first, then its feature file (whose presence marks it done)."""
    atomic_write_parquet(errors_to_table(errors), shard_errors_path(directory, shard))
    atomic_write_parquet(table, shard_path(directory, shard))


def completed_shards(directory: Path) -> set[int]:
    """Indices of the shards whose feature file exists."""
    return {
        int(path.name[5:10])
        for path in (directory / SHARDS).glob("part-?????.parquet")
    }


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest of the store at ``directory``, or ``None`` if there is none."""
    path = Path(directory) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest atomically."""
    atomic_write_bytes(Path(directory) / MANIFEST, json.dumps(manifest, indent=2, allow_nan=False).encode())


def start_manifest(
    directory: Path,
    *,
    source: dict[str, str],
    settings: dict[str, Any],
    composition_labels: list[str],
    target_names: list[str],
    shard_size: int,
    overwrite: bool = False,
    extra_identity: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Open a store for writing: check a previous run's manifest matches, or start a fresh one.

    A rerun over the same input and settings (and ``extra_identity``, e.g. the model of a predictions
    directory) keeps its complete shards; anything else raises :class:`StoreMismatchError` unless
    ``overwrite`` is set, in which case old shards are removed.
    """
    directory = Path(directory)
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise UserError(f"shard size must be a whole number of rows >= 1, got {shard_size!r}")
    identity = {
        "input_hash": source["fingerprint"],
        "featurizer": settings,
        "targets": target_names,
        "shard_size": shard_size,
        **(extra_identity or {}),
    }
    previous = read_manifest(directory)
    if previous is not None:
        same = all(previous.get(key) == value for key, value in identity.items())
        if not same and not overwrite:
            raise StoreMismatchError(
                f"{directory} holds shards made from another input or with other settings or model "
                f"(input hash {previous.get('input_hash', '?')[:12]}…); "
                "pass --overwrite to replace it or choose another --out"
            )
        if not same:
            for path in (directory / SHARDS).glob("part-*.parquet"):
                path.unlink()
            (directory / ERRORS).unlink(missing_ok=True)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "hybridmat_version": __version__,
        "status": "running",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": {"spec": source["spec"], "description": source["description"]},
        **identity,
        "composition_labels": composition_labels,
    }
    write_manifest(directory, manifest)
    return manifest


def _move_duplicates(directory: Path, shards: list[int]) -> None:
    """Move later repeats of an id from the shards' feature files to the same shards' error files.

    The error file is rewritten first (holding the repeats once, keyed by input index), then the feature
    file, so a crash in between leaves a state that the next run repairs and nothing is ever lost.
    """
    first_index: dict[str, int] = {}
    tables = {s: pq.read_table(shard_path(directory, s), columns=["index", "id"]) for s in shards}
    error_tables = {s: pq.read_table(shard_errors_path(directory, s), columns=["index", "id"]) for s in shards}
    occurrences = sorted(
        (index, identifier)
        for table in [*tables.values(), *error_tables.values()]
        for index, identifier in zip(table.column("index").to_pylist(), table.column("id").to_pylist())
    )
    for index, identifier in occurrences:
        first_index.setdefault(identifier, index)
    for shard, table in tables.items():
        repeats = [
            (index, identifier)
            for index, identifier in zip(table.column("index").to_pylist(), table.column("id").to_pylist())
            if first_index[identifier] != index
        ]
        if not repeats:
            continue
        known = set(error_tables[shard].column("index").to_pylist())
        moved = errors_to_table([
            (index, RecordError(identifier, "duplicate",
                                f"id already used by input row {first_index[identifier]}; kept the first"))
            for index, identifier in repeats if index not in known
        ])
        errors = pq.read_table(shard_errors_path(directory, shard), schema=ERROR_SCHEMA)
        atomic_write_parquet(pa.concat_tables([errors, moved]).sort_by("index"), shard_errors_path(directory, shard))
        full = pq.read_table(shard_path(directory, shard))
        drop = pa.array([index for index, _ in repeats], type=pa.int64())
        atomic_write_parquet(full.filter(pc.invert(pc.is_in(full.column("index"), drop))), shard_path(directory, shard))


def finalize_store(directory: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """De-duplicate ids, merge shard errors into ``errors.parquet`` and mark the manifest complete."""
    directory = Path(directory)
    shards = sorted(completed_shards(directory))
    _move_duplicates(directory, shards)
    errors = pa.concat_tables(
        [pq.read_table(shard_errors_path(directory, s), schema=ERROR_SCHEMA) for s in shards]
        + [ERROR_SCHEMA.empty_table()]
    ).sort_by("index")
    atomic_write_parquet(errors, directory / ERRORS)
    rows = sum(pq.ParquetFile(shard_path(directory, s)).metadata.num_rows for s in shards)
    manifest = {
        **manifest,
        "status": "complete",
        "completed": datetime.now(UTC).isoformat(timespec="seconds"),
        "counts": {"inputs": rows + errors.num_rows, "rows": rows, "errors": errors.num_rows, "shards": len(shards)},
        "errors_by_stage": {
            stage: int(count)
            for stage, count in zip(*np.unique(errors.column("stage").to_numpy(zero_copy_only=False),
                                               return_counts=True))
        },
    }
    write_manifest(directory, manifest)
    return manifest


@dataclass(frozen=True)
class FeatureStore:
    """Read access to a complete feature store directory."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))  # accept str paths too
        manifest = read_manifest(self.path)
        if manifest is None:
            raise FileNotFoundError(f"{self.path} is not a feature store (no {MANIFEST}); "
                                    "run `hybridmat featurize` first")
        if manifest.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(
                f"{self.path} has feature-store schema {manifest.get('schema_version')}, this hybridmat reads "
                f"{SCHEMA_VERSION}; featurize again with --overwrite"
            )

    @property
    def manifest(self) -> dict[str, Any]:
        """The parsed ``manifest.json``."""
        return read_manifest(self.path) or {}

    def shard_files(self) -> list[Path]:
        """Feature shard files in input order."""
        return [shard_path(self.path, s) for s in sorted(completed_shards(self.path))]

    def read_table(self, columns: list[str] | None = None) -> pa.Table:
        """All feature rows (optionally only ``columns``) as one Arrow table, in input order."""
        tables = [pq.read_table(p, columns=columns) for p in self.shard_files()]
        return pa.concat_tables(tables) if tables else pa.table({})

    def iter_batches(self) -> Iterator[FeatureBatch]:
        """One :class:`FeatureBatch` per shard, in input order."""
        for path in self.shard_files():
            yield table_to_batch(pq.read_table(path))

    def errors(self) -> pa.Table:
        """The error table ``(index, id, stage, reason)``."""
        path = self.path / ERRORS
        return pq.read_table(path) if path.exists() else ERROR_SCHEMA.empty_table()
