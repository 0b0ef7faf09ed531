"""Ray plumbing shared by every sharded stage: restartable actors, a bounded map over shards, one actor kind
for featurization.

Featurizing a shard and predicting it are pure functions of its rows, so an actor that dies is restarted
(:data:`FAULT_TOLERANCE`) and a shard whose result is lost anyway is submitted again
(:func:`bounded_map`). :class:`FeaturizeWorker` is the one featurization actor: ``hybridmat featurize``
asks it for feature tables, ``hybridmat screen`` for feature batches to hand to an inference actor.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import ray

from hybridmat.data.records import RecordError
from hybridmat.data.source import Source
from hybridmat.features.columns import batch_to_table
from hybridmat.features.featurizer import FeatureBatch, FeaturizerSettings, composition_featurizer
from hybridmat.features.pipeline import ShardInput, ShardResult, featurize_shard_batch

#: Shards in flight per worker: one running, one queued, so a worker never waits on the driver.
IN_FLIGHT_PER_WORKER = 2
#: Restart a crashed actor and retry its call (every actor method here is a pure function of a shard).
FAULT_TOLERANCE = {"max_restarts": -1, "max_task_retries": -1}
#: Errors that mean a shard's work was lost with its actor, worker or node (so it is submitted again).
LOST = (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError, ray.exceptions.WorkerCrashedError,
        ray.exceptions.NodeDiedError)


@dataclass(frozen=True)
class ShardFeatures:
    """One featurized shard as a batch: what a featurization actor hands to an inference actor."""

    batch: FeatureBatch
    errors: list[tuple[int, RecordError]]
    count: int


class FeaturizeWorker:
    """A Ray actor: the source, the featurizer settings and warm element tables; one shard per call.

    A worker reads its own rows when the source can seek, so structures never pass through the driver.
    """

    def __init__(self, source: Source, settings: FeaturizerSettings, target_names: tuple[str, ...] = (),
                 require_targets: bool = False) -> None:
        self.source, self.settings = source, settings
        self.target_names, self.require_targets = target_names, require_targets
        composition_featurizer(settings.composition)  # element tables loaded once per actor

    def features(self, shard: ShardInput) -> ShardFeatures:
        """The shard's feature batch, its indexed errors and its input count."""
        return ShardFeatures(*featurize_shard_batch(shard.read(self.source), shard.start, self.settings,
                                                    self.target_names, self.require_targets))

    def featurize(self, shard: ShardInput) -> ShardResult:
        """``(feature table, indexed errors, number of inputs)`` of one shard, as a feature store holds it."""
        features = self.features(shard)
        return batch_to_table(features.batch), features.errors, features.count


def start_actors(actor_class: type, count: int, *args: Any, name: str | None = None,
                 **resources: Any) -> list[ray.actor.ActorHandle]:
    """``count`` restartable actors of ``actor_class`` built with ``args`` (named ``<name>-<k>`` if ``name``)."""
    remote = ray.remote(**resources, **FAULT_TOLERANCE)(actor_class)
    return [(remote.options(name=f"{name}-{k}") if name else remote).remote(*args) for k in range(count)]


def round_robin(pool: Sequence[ray.actor.ActorHandle], method: str,
                shards: Iterable[ShardInput]) -> Iterator[tuple[ShardInput, Any]]:
    """``(shard, result)`` of calling ``method`` of the pool's actors in turn on each shard, in order, with
    :data:`IN_FLIGHT_PER_WORKER` calls in flight per actor (:func:`bounded_map`)."""
    turns = itertools.cycle(pool)

    def submit(shard: ShardInput) -> ray.ObjectRef:
        return getattr(next(turns), method).remote(shard)

    return bounded_map(submit, shards, IN_FLIGHT_PER_WORKER * len(pool))


def commit_with_pool(pool: Sequence[ray.actor.ActorHandle], method: str, shards: Iterable[ShardInput],
                     commit: Callable[[Iterator[tuple[ShardInput, Any]]], dict[str, Any]]) -> dict[str, Any]:
    """``commit`` the results of :func:`round_robin` over ``shards`` as they come; the pool is stopped after, also
    on failure. Returns what ``commit`` returns (a store's final manifest)."""
    try:
        return commit(round_robin(pool, method, shards))
    finally:
        stop_actors(pool)


def stop_actors(actors: Sequence[ray.actor.ActorHandle]) -> None:
    """Kill ``actors`` (no restart)."""
    for actor in actors:
        ray.kill(actor)


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
