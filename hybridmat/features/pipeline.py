"""Single-process featurization of a source into a feature store, shard by shard.

The Ray path (``hybridmat.distributed``) runs the same :func:`featurize_shard` in actors; this module
is what it is measured against.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hybridmat.data.records import RecordError, SourceItem, StructureRecord, check_targets
from hybridmat.data.source import Source
from hybridmat.features.columns import batch_to_table
from hybridmat.features.featurizer import FeaturizerSettings, composition_featurizer, featurize_records
from hybridmat.features.store import completed_shards, finalize_store, start_manifest, write_shard

DEFAULT_SHARD_SIZE = 1000


def featurize_shard(
    items: Iterable[SourceItem],
    first_index: int,
    settings: FeaturizerSettings,
    target_names: tuple[str, ...],
    require_targets: bool,
) -> tuple[Any, list[tuple[int, RecordError]], int]:
    """Featurize one shard's items; return ``(feature table, indexed errors, number of inputs)``."""
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
    return batch_to_table(batch), sorted(errors + featurize_errors, key=lambda pair: pair[0]), count


def pending_shards(source: Source, shard_size: int, done: set[int]) -> Iterator[tuple[int, Iterable[SourceItem]]]:
    """``(shard index, items)`` for every shard not in ``done``.

    When the source knows its length it seeks straight to each pending shard; otherwise it is read
    through once and finished shards are skipped.
    """
    total = source.count()
    if total is not None:
        for shard in range(-(-total // shard_size)):
            if shard not in done:
                yield shard, source.iter_range(shard * shard_size, min(total, (shard + 1) * shard_size))
        return
    iterator = iter(source)
    for shard in itertools.count():
        items = list(itertools.islice(iterator, shard_size))
        if not items:
            return
        if shard not in done:
            yield shard, items


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
    manifest = start_manifest(
        out,
        source={"spec": spec, "description": source.describe(), "fingerprint": source.fingerprint()},
        settings=settings.as_dict(),
        composition_labels=composition_featurizer(settings.composition).feature_labels(),
        target_names=list(source.targets),
        shard_size=shard_size,
        overwrite=overwrite,
    )
    done = completed_shards(out)
    total = source.count()
    columns = [TextColumn("featurize"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, disable=not progress, transient=True) as bar:
        task = bar.add_task("featurize", total=total)
        bar.update(task, completed=min(len(done) * shard_size, total or 0))
        for shard, items in pending_shards(source, shard_size, done):
            table, errors, count = featurize_shard(
                items, shard * shard_size, settings, tuple(source.targets), require_targets
            )
            write_shard(out, shard, table, errors)
            bar.advance(task, count)
    return finalize_store(out, manifest)
