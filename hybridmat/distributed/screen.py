"""``hybridmat screen``: candidates stream through featurization actors and inference actors into shards.

::

    source ─► FeaturizeWorker (CPU, ×F) ─► InferenceWorker (ensemble on its device, ×I) ─► driver ─► OUT/shards/

The driver cuts the source into shards and keeps at most two per featurization worker in flight
(backpressure: the source is read only as fast as the workers keep up, so memory stays flat however many
candidates there are). A shard's features go from the featurization actor to an inference actor
through the object store, not through the driver; the driver only receives the finished predictions and
commits each shard once, atomically (``part-NNNNN.errors.parquet`` then ``part-NNNNN.parquet``).

Exactly once: a shard is written only by the driver and only when its file does not exist yet. Actors
restart when they die (``max_restarts=-1``) and Ray retries their calls; a shard whose result is lost
anyway (e.g. with its node) is submitted again. A rerun skips committed shards; at the end ids are
de-duplicated across shards and every input row is either a prediction or in ``errors.parquet``.

OUT is laid out like a feature store (``manifest.json``, ``shards/``, ``errors.parquet``), with rows
``index`` and the columns of ``hybridmat predict`` (:meth:`~hybridmat.workflows.predict.Predictor.predict_batch`).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ray

from hybridmat.config import SCREEN_SHARD_SIZE
from hybridmat.data.source import Source
from hybridmat.distributed.pool import (
    IN_FLIGHT_PER_WORKER,
    FeaturizeWorker,
    ShardFeatures,
    bounded_map,
    start_actors,
    stop_actors,
)
from hybridmat.distributed.runtime import gpu_share, require_cpus
from hybridmat.features.pipeline import ShardInput, ShardResult, commit_shards, open_store, pending_shards
from hybridmat.locking import holds_directory_lock


class InferenceWorker:
    """A Ray actor holding the whole ensemble on its device; predicts one shard per call.

    The ensemble arrives with the first call (and again after a restart) as a reference to the members'
    checkpoint bytes, wrapped in a list so that Ray passes the reference and the bytes are fetched only
    while the actor has no ensemble loaded.
    """

    def __init__(self, ensemble_id: str, threads: int = 1) -> None:
        import torch

        torch.set_num_threads(threads)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.ensemble_id = ensemble_id
        self.ensemble: Any = None

    def _load(self, checkpoints: list[ray.ObjectRef]) -> None:
        from hybridmat.workflows.predict import load_predictor

        self.ensemble = load_predictor(ray.get(checkpoints[0]), self.device)

    def predict(self, features: ShardFeatures,
                checkpoints: list[ray.ObjectRef]) -> ShardResult:
        """``(predictions table, indexed errors, number of inputs)`` of one shard."""
        if self.ensemble is None:
            self._load(checkpoints)
        return self.ensemble.predict_batch(features.batch, index=True), features.errors, features.count


def _default_featurize_workers(inference_workers: int) -> int:
    """All CPUs of the cluster but one per inference actor (at least one)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)) - inference_workers)


@holds_directory_lock("out", "screen")
def screen_with_ray(
    source: Source,
    checkpoints: Sequence[Path],
    out: Path,
    *,
    spec: str,
    shard_size: int = SCREEN_SHARD_SIZE,
    featurize_workers: int | None = None,
    inference_workers: int = 1,
    overwrite: bool = False,
    progress: bool = True,
    actor_prefix: str | None = None,
) -> dict[str, Any]:
    """Screen ``source`` with the ensemble ``checkpoints`` into ``out`` (Ray must be running); resumable.

    Actors are named ``<actor_prefix>-featurize-<k>`` / ``<actor_prefix>-inference-<k>`` (default prefix:
    ``hybridmat-screen-<random>``) so an operator or a test can find them. Returns the final manifest,
    whose ``counts`` account for every input row.
    """
    from hybridmat.workflows.predict import load_predictor, model_files

    out = Path(out)
    actor_prefix = actor_prefix or f"hybridmat-screen-{uuid.uuid4().hex[:8]}"
    total = source.count()  # before the source is shipped to the actors: lets a source cache its index
    blobs = model_files(checkpoints)  # members + calibration + domain model, as bytes for the actors
    ensemble = load_predictor(blobs)
    settings, ensemble_id = ensemble.settings, blobs.model_id
    featurize_workers = featurize_workers or _default_featurize_workers(inference_workers)
    require_cpus(featurize_workers + inference_workers,
                 f"{featurize_workers} featurization + {inference_workers} inference actors")
    manifest, done = open_store(source, out, spec, settings, shard_size, overwrite,
                                predictions_of=(ensemble_id, list(ensemble.target_names)))
    featurizers = start_actors(FeaturizeWorker, featurize_workers, source, settings,
                               name=f"{actor_prefix}-featurize", num_cpus=1)
    blobs_ref = ray.put(blobs)
    inferencers = start_actors(InferenceWorker, inference_workers, ensemble_id, name=f"{actor_prefix}-inference",
                               num_cpus=1, num_gpus=gpu_share(inference_workers))
    featurize_turns, inference_turns = itertools.cycle(featurizers), itertools.cycle(inferencers)

    def submit(shard: ShardInput) -> ray.ObjectRef:
        features = next(featurize_turns).features.remote(shard)
        return next(inference_turns).predict.remote(features, [blobs_ref])

    results = bounded_map(submit, pending_shards(source, shard_size, done), IN_FLIGHT_PER_WORKER * featurize_workers)
    try:
        return commit_shards(out, manifest, results, total, len(done) * shard_size,
                             f"screen ({featurize_workers}+{inference_workers} actors)", progress)
    finally:
        stop_actors(featurizers + inferencers)
