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
``index, id, formula, n_sites, <t>_mean, <t>_std, model_id``.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray

from hybridmat.data.records import RecordError
from hybridmat.data.source import Source
from hybridmat.distributed.featurize import FAULT_TOLERANCE, IN_FLIGHT_PER_WORKER, bounded_map
from hybridmat.distributed.runtime import gpu_share, require_cpus
from hybridmat.features.featurizer import FeatureBatch, FeaturizerSettings, composition_featurizer
from hybridmat.features.pipeline import ShardInput, ShardResult, commit_shards, featurize_shard_batch, pending_shards
from hybridmat.features.store import completed_shards, start_manifest

DEFAULT_SCREEN_SHARD_SIZE = 500


@dataclass(frozen=True)
class ShardFeatures:
    """What a featurization actor hands to an inference actor for one shard."""

    batch: FeatureBatch
    errors: list[tuple[int, RecordError]]
    count: int


class ScreenFeaturizer:
    """A Ray actor: the source and warm element tables; featurizes one shard per call."""

    def __init__(self, source: Source, settings: FeaturizerSettings) -> None:
        self.source, self.settings = source, settings
        composition_featurizer(settings.composition)

    def featurize(self, shard: ShardInput) -> ShardFeatures:
        """The shard's feature batch, its indexed errors and its input count."""
        return ShardFeatures(*featurize_shard_batch(shard.read(self.source), shard.start, self.settings))


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
        self.line_graph = False

    def _load(self, checkpoints: list[ray.ObjectRef]) -> None:
        from hybridmat.workflows.predict import load_ensemble

        self.ensemble, _, _ = load_ensemble(ray.get(checkpoints[0]), self.device)
        self.line_graph = any(m.model.needs_line_graph for m in self.ensemble.members)

    def predict(self, features: ShardFeatures,
                checkpoints: list[ray.ObjectRef]) -> ShardResult:
        """``(predictions table, indexed errors, number of inputs)`` of one shard."""
        from hybridmat.features.dataset import CrystalDataset
        from hybridmat.workflows.predict import predictions_table

        if self.ensemble is None:
            self._load(checkpoints)
        batch = features.batch
        names = self.ensemble.target_names
        if len(batch):
            mean, std = self.ensemble.predict(CrystalDataset(batch, [], self.line_graph))
        else:
            mean = std = np.empty((0, len(names)))
        table = predictions_table(batch.ids, batch.formulas, [g.num_nodes for g in batch.graphs], names,
                                  mean, std, self.ensemble_id, index=batch.index.tolist())
        return table, features.errors, features.count


def _default_featurize_workers(inference_workers: int) -> int:
    """All CPUs of the cluster but one per inference actor (at least one)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)) - inference_workers)


def screen_with_ray(
    source: Source,
    checkpoints: Sequence[Path],
    out: Path,
    *,
    spec: str,
    shard_size: int = DEFAULT_SCREEN_SHARD_SIZE,
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
    from hybridmat.workflows.predict import load_ensemble, model_id

    out = Path(out)
    actor_prefix = actor_prefix or f"hybridmat-screen-{uuid.uuid4().hex[:8]}"
    total = source.count()  # before the source is shipped to the actors: lets a source cache its index
    blobs = [Path(path).read_bytes() for path in checkpoints]
    ensemble, settings, _ = load_ensemble(blobs)
    ensemble_id = model_id(checkpoints)
    featurize_workers = featurize_workers or _default_featurize_workers(inference_workers)
    require_cpus(featurize_workers + inference_workers,
                 f"{featurize_workers} featurization + {inference_workers} inference actors")
    manifest = start_manifest(
        out,
        source={"spec": spec, "description": source.describe(), "fingerprint": source.fingerprint()},
        settings=settings.as_dict(), composition_labels=[], target_names=list(ensemble.target_names),
        shard_size=shard_size, overwrite=overwrite, extra_identity={"kind": "predictions", "model_id": ensemble_id},
    )
    done = completed_shards(out)
    featurizers = [
        ray.remote(num_cpus=1, **FAULT_TOLERANCE)(ScreenFeaturizer)
        .options(name=f"{actor_prefix}-featurize-{k}").remote(source, settings)
        for k in range(featurize_workers)
    ]
    blobs_ref = ray.put(blobs)
    inferencers = [
        ray.remote(num_cpus=1, num_gpus=gpu_share(inference_workers), **FAULT_TOLERANCE)(
            InferenceWorker).options(name=f"{actor_prefix}-inference-{k}").remote(ensemble_id)
        for k in range(inference_workers)
    ]
    featurize_turns, inference_turns = itertools.cycle(featurizers), itertools.cycle(inferencers)

    def submit(shard: ShardInput) -> ray.ObjectRef:
        features = next(featurize_turns).featurize.remote(shard)
        return next(inference_turns).predict.remote(features, [blobs_ref])

    results = bounded_map(submit, pending_shards(source, shard_size, done), IN_FLIGHT_PER_WORKER * featurize_workers)
    try:
        return commit_shards(out, manifest, results, total, len(done) * shard_size,
                             f"screen ({featurize_workers}+{inference_workers} actors)", progress)
    finally:
        for actor in featurizers + inferencers:
            ray.kill(actor)
