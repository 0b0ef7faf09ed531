"""``hybridmat featurize --workers N``: a pool of Ray actors featurizes shards; the driver writes them.

Each :class:`FeaturizeWorker` loads the element tables once and runs the same
:func:`~hybridmat.features.pipeline.featurize_shard` as the single-process path on one shard (≥ 100
rows: small batches lose to a single process) per call. A worker reads its own rows when the source
can seek, so structures never pass through the driver. The driver keeps at most two shards per worker
in flight (backpressure), commits each finished shard atomically and finalises the store exactly as
:func:`~hybridmat.features.pipeline.featurize_to_store` does, so the two paths write identical stores.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import ray

from hybridmat.data.source import Source
from hybridmat.distributed.runtime import require_cpus
from hybridmat.features.featurizer import FeaturizerSettings, composition_featurizer
from hybridmat.features.pipeline import (
    DEFAULT_SHARD_SIZE, ShardInput, ShardResult, commit_shards, featurize_shard, open_store, pending_shards,
)

#: Shards in flight per worker: one running, one queued, so a worker never waits on the driver.
IN_FLIGHT_PER_WORKER = 2
#: Restart a crashed worker and retry its shard (featurizing a shard is a pure function of its rows).
FAULT_TOLERANCE = {"max_restarts": -1, "max_task_retries": -1}
#: Errors that mean a shard's work was lost with its actor, worker or node (so it is submitted again).
LOST = (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError, ray.exceptions.WorkerCrashedError,
        ray.exceptions.NodeDiedError)


class FeaturizeWorker:
    """A Ray actor: the source, the featurizer settings and warm element tables; one shard per call."""

    def __init__(self, source: Source, settings: FeaturizerSettings, target_names: tuple[str, ...],
                 require_targets: bool) -> None:
        self.source, self.settings = source, settings
        self.target_names, self.require_targets = target_names, require_targets
        composition_featurizer(settings.composition)  # element tables loaded once per actor

    def featurize(self, shard: ShardInput) -> ShardResult:
        """``(feature table, indexed errors, number of inputs)`` of one shard."""
        return featurize_shard(shard.read(self.source), shard.start, self.settings, self.target_names,
                               self.require_targets)


def _lost(error: Exception) -> bool:
    """Whether ``error`` means the work was lost (a dead actor, worker or node), not that it failed."""
    cause = error.cause if isinstance(error, ray.exceptions.RayTaskError) else error
    return isinstance(cause, LOST)


def bounded_map(submit: Callable[[ShardInput], ray.ObjectRef], shards: Iterable[ShardInput],
                limit: int, attempts: int = 3) -> Iterator[tuple[ShardInput, Any]]:
    """``(shard, result)`` as results finish, with at most ``limit`` shards submitted and unfinished.

    The shard iterator is consumed lazily, so a streaming source is read only as fast as the
    workers keep up and the driver's memory stays bounded. A shard whose result is lost (beyond Ray's
    own retries) is submitted again, up to ``attempts`` times in all; a shard that fails is raised.
    """
    running: dict[ray.ObjectRef, tuple[ShardInput, int]] = {}
    iterator = iter(shards)
    exhausted = False
    while running or not exhausted:
        while not exhausted and len(running) < limit:
            shard = next(iterator, None)
            if shard is None:
                exhausted = True
            else:
                running[submit(shard)] = (shard, 1)
        if not running:
            continue
        [ready], _ = ray.wait(list(running), num_returns=1)
        shard, attempt = running.pop(ready)
        try:
            result = ray.get(ready)
        except ray.exceptions.RayError as error:
            if not _lost(error) or attempt >= attempts:
                raise
            running[submit(shard)] = (shard, attempt + 1)
            continue
        yield shard, result


def featurize_with_ray(
    source: Source,
    out: Path,
    *,
    spec: str,
    workers: int,
    settings: FeaturizerSettings | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    require_targets: bool = True,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Featurize ``source`` into the store at ``out`` with ``workers`` actors (Ray must be running).

    Same arguments, files and resume behaviour as :func:`~hybridmat.features.pipeline.featurize_to_store`.
    """
    settings = settings or FeaturizerSettings()
    out = Path(out)
    total = source.count()  # before the source is shipped to the actors: lets a source cache its index
    require_cpus(workers, f"{workers} featurization workers")
    manifest, done = open_store(source, out, spec, settings, shard_size, overwrite)
    actor = ray.remote(num_cpus=1, **FAULT_TOLERANCE)(FeaturizeWorker)
    pool = [actor.remote(source, settings, tuple(source.targets), require_targets) for _ in range(workers)]
    turns = itertools.cycle(pool)

    def submit(shard: ShardInput) -> ray.ObjectRef:
        return next(turns).featurize.remote(shard)

    results = bounded_map(submit, pending_shards(source, shard_size, done), IN_FLIGHT_PER_WORKER * workers)
    try:
        return commit_shards(out, manifest, results, total, len(done) * shard_size,
                             f"featurize ({workers} workers)", progress)
    finally:
        for worker in pool:
            ray.kill(worker)
