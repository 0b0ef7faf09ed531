"""Deep ensembles: K copies of a model trained with different seeds; their spread is the uncertainty.

Training one member is the plain function :func:`train_member` of (model name, model config, data,
train config, seed), so a Ray actor can run it unchanged; :func:`train_ensemble` runs the members one
after another. :meth:`Ensemble.predict` returns the members' mean and standard deviation: equal-weight, or
under per-target member weights (:mod:`hybridmat.training.stacking`) for an ensemble of different models.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from hybridmat.models.base import PropertyModel, build_model
from hybridmat.training.checkpoint import check_edge_basis, edge_dim_config, load_checkpoint, predict_table
from hybridmat.training.collate import GraphTable, resolve_dataset
from hybridmat.training.normalizer import TargetNormalizer
from hybridmat.training.stacking import MemberWeights, combine
from hybridmat.training.trainer import EpochCallback, TrainConfig, Trainer, TrainResult, seed_everything


@dataclass(frozen=True)
class Member:
    """One trained model with the normaliser that maps its outputs to original units."""

    model: PropertyModel
    normalizer: TargetNormalizer


@dataclass(frozen=True)
class MemberSpec:
    """One ensemble member: its seed, the directory it checkpoints to (and resumes from) and, for a warm
    restart, the checkpoint directory of the earlier run it continues."""

    seed: int
    checkpoint_dir: str | None
    init_from: str | None = None

    def config(self, base: TrainConfig) -> TrainConfig:
        """``base`` with this member's seed, checkpoint directory and earlier run."""
        return replace(base, seed=self.seed, checkpoint_dir=self.checkpoint_dir, init_from=self.init_from)


def member_specs(config: TrainConfig, members: int, output: Path | str | None) -> list[MemberSpec]:
    """Seeds ``config.seed + k``, checkpoint directories ``<output>/member-k`` and, with ``config.init_from``
    (an earlier job's output), earlier runs ``<init_from>/member-k``."""
    return [MemberSpec(config.seed + k, None if output is None else str(Path(output) / f"member-{k}"),
                       None if config.init_from is None else str(Path(config.init_from) / f"member-{k}"))
            for k in range(members)]


def train_member(
    model_name: str,
    model_config: Mapping[str, Any],
    train_set: Dataset,
    val_set: Dataset | None,
    config: TrainConfig,
    seed: int,
    *,
    loss: nn.Module | None = None,
    on_epoch_end: EpochCallback | None = None,
    resume: bool = False,
    featurizer_settings: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Build ``model_name`` under ``seed`` and train it with ``config`` (its ``seed`` replaced by ``seed``):
    the one way a member is trained, sequentially, on a Ray actor (:mod:`hybridmat.distributed.train`) or
    in a Tune trial (which keeps the :func:`member_trainer` to read the model after each epoch)."""
    trainer = member_trainer(model_name, model_config, train_set, val_set, config, seed, loss=loss,
                             featurizer_settings=featurizer_settings)
    return trainer.fit(resume=resume, on_epoch_end=on_epoch_end)


def member_trainer(
    model_name: str,
    model_config: Mapping[str, Any],
    train_set: Dataset,
    val_set: Dataset | None,
    config: TrainConfig,
    seed: int,
    *,
    loss: nn.Module | None = None,
    featurizer_settings: Mapping[str, Any] | None = None,
) -> Trainer:
    """The :class:`~hybridmat.training.trainer.Trainer` of one member, its model built under ``seed``.

    ``n_targets``, ``composition_dim`` and ``edge_dim`` default to the training set's (whose edge basis must be
    ``featurizer_settings``'); the seed fixes the initial weights as well as the batch order and dropout.
    """
    base, _ = resolve_dataset(train_set)
    check_edge_basis(featurizer_settings, base.edge_basis, "the training set")
    dims = {"n_targets": len(base.target_names), "composition_dim": base.composition.shape[1],
            **edge_dim_config(model_name, base.edge_basis)}
    full_config = {**dims, **model_config}
    seed_everything(seed)
    model = build_model(model_name, **full_config)
    return Trainer(model, train_set, val_set, replace(config, seed=seed), loss, featurizer_settings)


def train_ensemble(
    model_name: str,
    model_config: Mapping[str, Any],
    train_set: Dataset,
    val_set: Dataset | None,
    config: TrainConfig,
    n_members: int = 5,
    *,
    loss_factory: Callable[[], nn.Module] | None = None,
    resume: bool = False,
) -> tuple[Ensemble, list[TrainResult]]:
    """Train members ``k = 0..n_members-1`` sequentially with seeds ``config.seed + k``.

    With ``config.checkpoint_dir`` each member writes to ``<checkpoint_dir>/member-<k>/``, so an
    interrupted ensemble resumes member by member. ``loss_factory`` makes a fresh loss per member
    (default: the config's multi-task loss).
    """
    if n_members < 2:
        raise ValueError(f"an ensemble needs at least 2 members for a spread, got n_members={n_members}")
    results = [
        train_member(model_name, model_config, train_set, val_set, spec.config(config), spec.seed,
                     loss=None if loss_factory is None else loss_factory(), resume=resume)
        for spec in member_specs(config, n_members, config.checkpoint_dir)
    ]
    return Ensemble([Member(r.model, r.normalizer) for r in results]), results


class Ensemble:
    """Members that predict the same targets; :meth:`predict` gives their (weighted) mean and spread."""

    def __init__(self, members: Sequence[Member], featurizer_settings: Mapping[str, Any] | None = None,
                 weights: MemberWeights | None = None) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        names = {m.normalizer.target_names for m in members}
        if len(names) > 1:
            raise ValueError(f"ensemble members predict different targets: {sorted(names)}")
        self.members = list(members)
        #: The featurizer settings every member was trained with (empty when the checkpoints do not record them).
        self.featurizer_settings = dict(featurizer_settings or {})
        #: Per-target member weights (None: the equal-weight mean of a deep ensemble).
        self.weights = weights
        self._weight_matrix = None if weights is None else weights.matrix(self.target_names, len(self.members))

    @classmethod
    def from_checkpoints(cls, checkpoints: Sequence[Path | bytes], device: str | torch.device = "cpu",
                         weights: MemberWeights | None = None) -> Ensemble:
        """The one member loader: each checkpoint (a file or its bytes) with
        :func:`~hybridmat.training.checkpoint.load_checkpoint`; the members must share their featurizer settings.
        ``weights``: per-target member weights in checkpoint order (default: equal)."""
        members, settings = [], set()
        for checkpoint in checkpoints:
            model, normalizer, meta = load_checkpoint(checkpoint, device)
            members.append(Member(model, normalizer))
            settings.add(tuple(sorted((meta.get("featurizer_settings") or {}).items())))
        if len(settings) > 1:
            raise ValueError(f"ensemble members were trained on different featurizer settings: {sorted(settings)}")
        return cls(members, dict(settings.pop()) if settings else None, weights)

    @property
    def target_names(self) -> tuple[str, ...]:
        return self.members[0].normalizer.target_names

    def member_predictions(self, dataset: Dataset, batch_size: int = 256) -> np.ndarray:
        """``(K, n, T)`` float32: each member's predictions in original units (batched identically)."""
        line_graph = any(m.model.needs_line_graph for m in self.members)
        table = GraphTable.from_dataset(dataset, line_graph=line_graph)
        return np.stack([predict_table(m.model, m.normalizer, table, batch_size) for m in self.members])

    def predict(self, dataset: Dataset, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)``, each ``(n, T)`` float64, over the members, under the ensemble's weights (std with
        ddof=0: the population spread of the K predictions, 0 for a single member; not an unbiased estimate)."""
        return combine(self.member_predictions(dataset, batch_size), self._weight_matrix)
