"""Single-process featurization of a source into a feature store, shard by shard.

The Ray path (``hybridmat.distributed``) runs the same :func:`featurize_shard` in actors; this module
is what it is measured against.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hybridmat.data.records import RecordError, SourceItem, StructureRecord, check_targets
from hybridmat.data.source import Source
from hybridmat.features.columns import batch_to_table
from hybridmat.features.featurizer import FeatureBatch, FeaturizerSettings, composition_featurizer, featurize_records
from hybridmat.features.store import completed_shards, finalize_store, start_manifest, write_shard
from hybridmat.locking import directory_lock

DEFAULT_SHARD_SIZE = 1000
#: What processing one shard gives: its rows as a table, ``(input index, error)`` pairs, its input count.
ShardResult = tuple[Any, list[tuple[int, RecordError]], int]


def featurize_shard(
    items: Iterable[SourceItem],
    first_index: int,
    settings: FeaturizerSettings,
    target_names: tuple[str, ...],
    require_targets: bool,
) -> tuple[Any, list[tuple[int, RecordError]], int]:
    """Featurize one shard's items; return ``(feature table, indexed errors, number of inputs)``."""
    batch, errors, count = featurize_shard_batch(items, first_index, settings, target_names, require_targets)
    return batch_to_table(batch), errors, count


def featurize_shard_batch(
    items: Iterable[SourceItem],
    first_index: int,
    settings: FeaturizerSettings,
    target_names: tuple[str, ...] = (),
    require_targets: bool = False,
) -> tuple[FeatureBatch, list[tuple[int, RecordError]], int]:
    """Like :func:`featurize_shard`, with the rows as a :class:`FeatureBatch` (for inference)."""
    records: list[StructureRecord] = []
    positions: list[int] = []
    errors: list[tuple[int, RecordError]] = []
    count = 0
    for position, item in enumerate(items, start=first_index):
        count += 1
        if isinstance(item, RecordError):
            errors.append((position, item))
            continue
        problem = check_targets(item, target_names) if require_targets else None
        if problem:
            errors.append((position, problem))
            continue
        records.append(item)
        positions.append(position)
    batch, featurize_errors = featurize_records(records, settings, target_names, positions)
    return batch, sorted(errors + featurize_errors, key=lambda pair: pair[0]), count


@dataclass(frozen=True)
class ShardInput:
    """One shard of input rows: ``start``..``stop - 1`` of the source, or its ``items`` already read.

    A source that can seek is read where the shard is processed (a Ray worker reads only its rows);
    one that cannot is read through once by the caller, which then hands over the items.
    """

    shard: int
    start: int
    stop: int
    items: list[SourceItem] | None = None

    def read(self, source: Source) -> Iterable[SourceItem]:
        """The shard's items."""
        return self.items if self.items is not None else source.iter_range(self.start, self.stop)


def pending_shards(source: Source, shard_size: int, done: set[int]) -> Iterator[ShardInput]:
    """Every shard not in ``done``, in order.

    When the source knows its length each pending shard is a row range; otherwise the source is read
    through once, finished shards are skipped and the others carry their items.
    """
    total = source.count()
    if total is not None:
        for shard in range(-(-total // shard_size)):
            if shard not in done:
                yield ShardInput(shard, shard * shard_size, min(total, (shard + 1) * shard_size))
        return
    iterator = iter(source)
    for shard in itertools.count():
        items = list(itertools.islice(iterator, shard_size))
        if not items:
            return
        if shard not in done:
            yield ShardInput(shard, shard * shard_size, shard * shard_size + len(items), items)


def open_store(source: Source, out: Path, spec: str, settings: FeaturizerSettings, shard_size: int,
               overwrite: bool, *, predictions_of: tuple[str, list[str]] | None = None,
               ) -> tuple[dict[str, Any], set[int]]:
    """Start (or reopen) the store at ``out`` for ``source``; return its manifest and the finished shards.

    ``predictions_of`` = ``(model id, target names)`` makes it a predictions directory (``hybridmat screen``):
    no composition columns, the model's targets, and the model id part of what a rerun must match.
    """
    composition_labels = composition_featurizer(settings.composition).feature_labels()
    target_names, extra_identity = list(source.targets), None
    if predictions_of is not None:
        composition_labels, target_names = [], list(predictions_of[1])
        extra_identity = {"kind": "predictions", "model_id": predictions_of[0]}
    manifest = start_manifest(
        out,
        source={"spec": spec, "description": source.describe(), "fingerprint": source.fingerprint()},
        settings=settings.as_dict(),
        composition_labels=composition_labels,
        target_names=target_names,
        shard_size=shard_size,
        overwrite=overwrite,
        extra_identity=extra_identity,
    )
    return manifest, completed_shards(out)


def progress_bar(label: str, enabled: bool) -> Progress:
    """A transient rich progress bar (count, elapsed) used by every sharded stage."""
    columns = [TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    return Progress(*columns, disable=not enabled, transient=True)


def commit_shards(out: Path, manifest: dict[str, Any], results: Iterable[tuple[ShardInput, ShardResult]],
                  total: int | None, already_done: int, label: str, progress: bool) -> dict[str, Any]:
    """Write each finished shard atomically as it arrives (with a progress bar), then finalise the store.

    ``results`` yields ``(shard, (table, indexed errors, number of inputs))`` in any order; it is how the
    single-process path and the Ray paths differ, and all that differs.
    """
    with progress_bar(label, progress) as bar:
        task = bar.add_task(label, total=total)
        bar.update(task, completed=min(already_done, total or 0))
        for shard, (table, errors, count) in results:
            write_shard(out, shard.shard, table, errors)
            bar.advance(task, count)
    return finalize_store(out, manifest)


def featurize_to_store(
    source: Source,
    out: Path,
    *,
    spec: str,
    settings: FeaturizerSettings | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    require_targets: bool = True,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Featurize ``source`` into the store at ``out``; resumable; returns the final manifest.

    With ``require_targets`` a row missing one of the source's targets (NaN, empty) goes to the error
    table; without it the row is kept with NaN (models mask missing labels).
    """
    settings = settings or FeaturizerSettings()
    out = Path(out)
    with directory_lock(out, "featurize"):
        manifest, done = open_store(source, out, spec, settings, shard_size, overwrite)
        results = (
            (shard, featurize_shard(shard.read(source), shard.start, settings, tuple(source.targets), require_targets))
            for shard in pending_shards(source, shard_size, done)
        )
        return commit_shards(out, manifest, results, source.count(), len(done) * shard_size, "featurize", progress)
