"""``hybridmat featurize --workers N``: a pool of Ray actors featurizes shards; the driver writes them.

Each :class:`~hybridmat.distributed.pool.FeaturizeWorker` loads the element tables once and runs the same
:func:`~hybridmat.features.pipeline.featurize_shard_batch` as the single-process path on one shard (≥ 100
rows: small batches lose to a single process) per call. The driver keeps at most two shards per worker
in flight (backpressure), commits each finished shard atomically and finalises the store exactly as
:func:`~hybridmat.features.pipeline.featurize_to_store` does, so the two paths write identical stores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hybridmat.data.source import Source
from hybridmat.distributed.pool import FeaturizeWorker, commit_with_pool, start_actors
from hybridmat.distributed.runtime import require_cpus
from hybridmat.features.featurizer import FeaturizerSettings
from hybridmat.features.pipeline import (
    DEFAULT_SHARD_SIZE,
    commit_shards,
    open_store,
    pending_shards,
)


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
    pool = start_actors(FeaturizeWorker, workers, source, settings, tuple(source.targets), require_targets,
                        num_cpus=1)
    return commit_with_pool(pool, "featurize", pending_shards(source, shard_size, done), lambda results: commit_shards(
        out, manifest, results, total, len(done) * shard_size, f"featurize ({workers} workers)", progress))
