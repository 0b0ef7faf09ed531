"""Deep-ensemble members trained concurrently, one Ray actor each (a fraction of a GPU where there are GPUs).

Each actor runs the plain :func:`~hybridmat.training.ensemble.train_member` on the split data, which is
put into the object store once and shared by all members (numpy arrays are read zero-copy). The members
come back to the driver on the CPU, so the driver needs no GPU of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import ray

from hybridmat.distributed.runtime import gpu_share
from hybridmat.training.ensemble import MemberSpec, train_member
from hybridmat.training.trainer import TrainConfig, TrainResult
from hybridmat.workflows.fitting import SplitData


class MemberTrainer:
    """A Ray actor that trains one ensemble member."""

    def train(self, name: str, hyper: Mapping[str, Any], data: SplitData, config: TrainConfig,
              featurizer_settings: Mapping[str, Any] | None) -> TrainResult:
        """Train (resuming from ``config.checkpoint_dir`` if a run was interrupted); the model returns on CPU."""
        result = train_member(name, hyper, data.train, data.val, config, config.seed,
                              resume=config.checkpoint_dir is not None, featurizer_settings=featurizer_settings)
        result.model.cpu()
        result.normalizer.to("cpu")
        result.loss.cpu()
        return result


def member_resources(members: int) -> dict[str, float]:
    """One CPU per member, plus ``1/members`` of a GPU when the cluster has GPUs."""
    return {"num_cpus": 1, "num_gpus": gpu_share(members)}


def train_members_on_ray(name: str, hyper: Mapping[str, Any], data: SplitData, config: TrainConfig,
                         members: Sequence[MemberSpec],
                         featurizer_settings: Mapping[str, Any] | None = None) -> list[TrainResult]:
    """Train ``members`` concurrently (Ray must be running); results in member order.

    A :data:`~hybridmat.workflows.fitting.MemberRunner` for :func:`~hybridmat.workflows.fitting.fit_torch`.
    """
    data_ref = ray.put(data)
    actor = ray.remote(**member_resources(len(members)))(MemberTrainer)
    trainers = [actor.remote() for _ in members]
    futures = [
        trainer.train.remote(name, hyper, data_ref, replace(spec.config(config), num_threads=config.num_threads or 1),
                             featurizer_settings)
        for trainer, spec in zip(trainers, members, strict=True)
    ]
    try:
        return ray.get(futures)
    finally:
        for trainer in trainers:
            ray.kill(trainer)

