"""The one trainer for every torch model: normalised targets, AdamW, a one-cycle or cosine schedule,
early stopping on validation MAE, AMP on CUDA, deterministic CPU runs and resume after a crash.

With several targets, "validation MAE" (``val_mae``, what early stopping and the best epoch use) is
:func:`~hybridmat.training.metrics.selection_mae`: the mean of the per-target MAEs each divided by that
target's training standard deviation. The raw per-target MAEs are reported as ``val_mae_<target>``.

Resume: with ``checkpoint_dir`` set, ``last.pt`` is written atomically after every epoch. It holds the
model, optimiser, scheduler, grad scaler and loss states, the normaliser, the best weights so far with
their epoch and metric, the early-stopping counter, the history and the torch/numpy/python RNG states.
``train_model(..., resume=True)`` loads it and continues with the next epoch. Batches are shuffled by a
generator seeded with ``(seed, epoch)``, so the continued run sees the same batches and random numbers
as an uninterrupted one and, on CPU, ends with identical weights.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.utils.deterministic
from torch import nn
from torch.utils.data import Dataset

from hybridmat.machine import usable_cores
from hybridmat.models.base import PropertyModel
from hybridmat.models.losses import MultiTaskLoss
from hybridmat.training.checkpoint import predict_table, read_state, save_checkpoint, write_state
from hybridmat.training.collate import GraphTable
from hybridmat.training.heap import retained_heap
from hybridmat.training.metrics import mae, selection_mae
from hybridmat.training.normalizer import TargetNormalizer

LAST = "last.pt"
BEST = "best.pt"
#: Config fields that change the training trajectory: a resumed run must have the same values.
TRAJECTORY_FIELDS = ("epochs", "batch_size", "lr", "weight_decay", "schedule", "seed", "amp", "amp_dtype",
                     "loss_weighting", "loss_weights", "loss_regression", "max_grad_norm", "init_from")


@dataclass
class TrainConfig:
    """Hyper-parameters and runtime settings of one training run (plain values: fits a job file)."""

    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-5
    schedule: Literal["onecycle", "cosine"] = "onecycle"
    #: Stop after this many epochs without a lower validation MAE (None: never stop early).
    patience: int | None = 20
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: Mixed precision (autocast + GradScaler for float16); only ever used on CUDA.
    amp: bool = True
    amp_dtype: Literal["bfloat16", "float16"] = "bfloat16"
    #: torch intra-op threads (None: ``OMP_NUM_THREADS`` if set, as Ray sets it per worker, else every core
    #: this process may use). On shared cores use fewer: every op waits for its slowest thread.
    num_threads: int | None = None
    #: ``torch.use_deterministic_algorithms`` during CPU runs (same seed -> identical weights).
    deterministic: bool = True
    #: On CPU, keep freed memory in the process for the run (:mod:`hybridmat.training.heap`): 2.4x faster ALIGNN
    #: training on 2 cores (``hybridmat bench alignn``) for +35 % peak memory. Does not change any number.
    retain_heap: bool = True
    #: Where ``last.pt`` (resume) and ``best.pt`` (the final model) go; None writes nothing.
    checkpoint_dir: str | None = None
    #: A warm restart: the checkpoint directory of an earlier run of the same model on the same data, whose
    #: ``best.pt`` weights, loss state and history this run continues with a new schedule of ``epochs`` epochs
    #: (SGDR, Loshchilov & Hutter 2017). For an ensemble job, the earlier job's output: member k continues
    #: ``member-k``.
    init_from: str | None = None
    #: :class:`~hybridmat.models.losses.MultiTaskLoss` settings: fixed λ (``loss_weights``, default all 1)
    #: or learned uncertainty weights; ``l1`` or ``l2`` per-target error.
    loss_weighting: Literal["fixed", "uncertainty"] = "fixed"
    loss_weights: tuple[float, ...] | None = None
    loss_regression: Literal["l1", "l2"] = "l1"
    max_grad_norm: float | None = None
    eval_batch_size: int = 256

    def __post_init__(self) -> None:
        if self.schedule not in ("onecycle", "cosine"):
            raise ValueError(f"schedule must be 'onecycle' or 'cosine', got {self.schedule!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if self.amp_dtype not in ("bfloat16", "float16"):
            raise ValueError(f"amp_dtype must be 'bfloat16' or 'float16', got {self.amp_dtype!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("epochs, batch_size and eval_batch_size must be >= 1")
        if self.loss_weights is not None:
            self.loss_weights = tuple(float(v) for v in self.loss_weights)
        if self.checkpoint_dir is not None:
            self.checkpoint_dir = str(self.checkpoint_dir)  # a Path would not be a plain checkpoint value
        if self.init_from is not None:
            self.init_from = str(self.init_from)

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists) for checkpoints and reports."""
        values = asdict(self)
        values["loss_weights"] = None if self.loss_weights is None else list(self.loss_weights)
        return values


@dataclass
class TrainResult:
    """The trained model (best validation weights, eval mode) and what happened on the way."""

    model: PropertyModel
    normalizer: TargetNormalizer
    loss: nn.Module
    history: list[dict[str, float]]
    best_epoch: int
    best_val_mae: float
    stopped_early: bool
    checkpoint: Path | None = None
    metrics: dict[str, float] = field(default_factory=dict)


EpochCallback = Callable[[int, dict[str, float]], None]


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_loss(n_targets: int, config: TrainConfig) -> nn.Module:
    """The masked :class:`~hybridmat.models.losses.MultiTaskLoss` with the config's loss settings."""
    return MultiTaskLoss(n_targets, weighting=config.loss_weighting, weights=config.loss_weights,
                         regression=config.loss_regression)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` is CUDA when available, else CPU; asking for CUDA without a GPU is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("TrainConfig.device='cuda' but torch sees no GPU; use 'auto' or 'cpu'")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def default_threads() -> int:
    """``OMP_NUM_THREADS`` when set to a positive integer, else the cores this process may run on."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return usable_cores()


@contextmanager
def _runtime(config: TrainConfig, device: torch.device) -> Iterator[None]:
    """Set threads, deterministic algorithms and (CPU) heap retention for the run; restore the process settings
    afterwards.

    Deterministic mode also NaN-fills every new uninitialised tensor by default, a debugging aid that
    costs a memory pass per allocation and is not needed for reproducibility, so it is switched off.
    """
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.set_num_threads(config.num_threads or default_threads())
    if device.type == "cpu" and config.deterministic:
        torch.use_deterministic_algorithms(True)
        torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        with retained_heap(device.type == "cpu" and config.retain_heap):
            yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.utils.deterministic.fill_uninitialized_memory = fill


def _rng_state() -> dict[str, Any]:
    """All global generator states as plain values."""
    _, keys, position, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(position),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
    }


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    numpy = state["numpy"]
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["cached"]))
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss"]))


def _epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled order of epoch ``epoch``: a torch generator seeded from ``(seed, epoch)`` only."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).numpy()


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimiser steps in one pass over ``n`` structures (a last batch of one structure is dropped)."""
    steps = -(-n // batch_size)
    return steps - 1 if n > 1 and n % batch_size == 1 else steps  # the dropped singleton batch


def _schedule(
    optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step schedule over the whole run: one-cycle (warm-up to ``lr``, then anneal) or cosine decay."""
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total_steps)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)


def _clone(module: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


def _check_resumable(state: Mapping[str, Any], model: PropertyModel, config: TrainConfig, path: Path) -> None:
    saved = state["train_config"]
    changed = [name for name in TRAJECTORY_FIELDS if saved.get(name) != config.as_dict()[name]]
    if state["model_name"] != model.name or state["model_config"] != dict(model.config):
        changed.append("model")
    if changed:
        raise ValueError(
            f"cannot resume from {path}: {changed} differ from the interrupted run; "
            "use the same settings, or another checkpoint_dir (or resume=False) to start over"
        )


class Trainer:
    """One training run of ``model`` on ``train_set``, early-stopped on ``val_set`` (see the module doc)."""

    def __init__(
        self,
        model: PropertyModel,
        train_set: Dataset,
        val_set: Dataset | None,
        config: TrainConfig,
        loss: nn.Module | None = None,
        featurizer_settings: Mapping[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.featurizer_settings = featurizer_settings
        seed_everything(config.seed)
        self.train_table = GraphTable.from_dataset(train_set, line_graph=model.needs_line_graph)
        line_graph = model.needs_line_graph
        self.val_table = None if val_set is None else GraphTable.from_dataset(val_set, line_graph=line_graph)
        if self.train_table.y is None:
            raise ValueError("the training set has no targets: build the CrystalDataset with target_names")
        self.target_names = self.train_table.target_names
        if model.n_targets != len(self.target_names):
            raise ValueError(
                f"model {model.name!r} predicts {model.n_targets} targets, the data has {self.target_names}"
            )
        self.normalizer = TargetNormalizer.fit(self.train_table.y, self.target_names).to(self.device)
        if model.uses_composition:
            model.fit_composition_scaling(torch.from_numpy(self.train_table.composition))
        self.model = model.to(self.device)
        self.loss = (build_loss(model.n_targets, config) if loss is None else loss).to(self.device)
        groups = [{"params": list(model.parameters())}]
        if any(True for _ in self.loss.parameters()):  # learned loss weights: optimised, never decayed
            groups.append({"params": list(self.loss.parameters()), "weight_decay": 0.0})
        self.optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
        self.steps_per_epoch = steps_per_epoch(len(self.train_table), config.batch_size)
        self.scheduler = _schedule(self.optimizer, config, config.epochs * self.steps_per_epoch)
        self.use_amp = config.amp and self.device.type == "cuda"
        self.amp_dtype = getattr(torch, config.amp_dtype)
        fp16 = self.use_amp and config.amp_dtype == "float16"
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=fp16)  # bfloat16 needs no loss scaling
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        self.best_val_mae = float("inf")
        self.best_epoch = 0
        self.bad_epochs = 0
        self.finished = False
        if config.init_from is not None:
            self.continue_from(Path(config.init_from) / BEST)
        #: Epochs the run had done before this schedule (a warm restart's earlier run; 0 otherwise).
        self.start_epoch = self.epoch
        self.best_state = {"model": _clone(self.model), "loss": _clone(self.loss)}

    def continue_from(self, path: Path) -> None:
        """Start from an earlier run's ``best.pt`` of the same model and targets: its weights, loss state, and
        its history up to that best epoch (so the validation curve and the training seconds stay whole)."""
        state = read_state(path)
        if state.get("name") != self.model.name or state.get("config") != dict(self.model.config):
            raise ValueError(f"cannot continue from {path}: it is {state.get('name')!r} {state.get('config')}, "
                             f"this run trains {self.model.name!r} {dict(self.model.config)}")
        if list(state["target_names"]) != list(self.target_names):
            raise ValueError(f"cannot continue from {path}: it predicts {state['target_names']}, this run "
                             f"{list(self.target_names)}")
        self.model.load_state_dict(state["state_dict"])
        extra = state["extra"]
        if extra.get("loss_state"):
            self.loss.load_state_dict(extra["loss_state"])
        self.normalizer = TargetNormalizer.from_state_dict(state["normalizer"]).to(self.device)
        self.epoch = int(extra.get("best_epoch", 0))
        self.history = [m for m in extra.get("history", []) if m["epoch"] <= self.epoch]
        best = next((m for m in self.history if m["epoch"] == self.epoch), {})
        self.best_val_mae, self.best_epoch = float(best.get("val_mae", float("inf"))), self.epoch

    @property
    def checkpoint_dir(self) -> Path | None:
        return None if self.config.checkpoint_dir is None else Path(self.config.checkpoint_dir)

    def train_epoch(self) -> tuple[float, int]:
        """One pass over the shuffled training set: (mean training loss, structures seen)."""
        self.model.train()
        self.loss.train()
        order = _epoch_order(len(self.train_table), self.config.seed, self.epoch)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        seen = 0
        for batch in self.train_table.batches(self.config.batch_size, order, drop_singleton=True):
            if self.device.type != "cpu":
                batch = batch.to(self.device, non_blocking=True)
            target = self.normalizer.normalize(batch.y)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
                prediction = self.model(batch)
            value = self.loss(prediction.float(), target)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(value).backward()
            if self.config.max_grad_norm is not None:
                self.scaler.unscale_(self.optimizer)
                parameters = [p for group in self.optimizer.param_groups for p in group["params"]]
                nn.utils.clip_grad_norm_(parameters, self.config.max_grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            total += value.detach() * batch.num_graphs
            seen += batch.num_graphs
        return float(total) / max(seen, 1), seen

    def evaluate(self, table: GraphTable) -> np.ndarray:
        """Per-target MAE in original units on ``table`` (NaN labels ignored)."""
        prediction = predict_table(self.model, self.normalizer, table, self.config.eval_batch_size,
                                   self.amp_dtype if self.use_amp else None, self.config.retain_heap)
        return mae(table.y, prediction)

    def fit(self, resume: bool = False, on_epoch_end: EpochCallback | None = None) -> TrainResult:
        """Train until ``epochs`` or early stopping; restore and return the best validation weights."""
        last = None if self.checkpoint_dir is None else self.checkpoint_dir / LAST
        if resume and last is None:
            raise ValueError("resume=True needs TrainConfig.checkpoint_dir (where last.pt is written)")
        if resume and last is not None and last.exists():
            self.load_last(last)
        with _runtime(self.config, self.device):
            while not self.finished:
                metrics = self.run_epoch()
                if last is not None:
                    self.save_last(last)
                if on_epoch_end is not None:
                    on_epoch_end(self.epoch, metrics)
        return self.result()

    def run_epoch(self) -> dict[str, float]:
        """Train one epoch, validate, update the best state and the stopping flag; the epoch's metrics."""
        start = time.perf_counter()
        train_loss, seen = self.train_epoch()
        train_seconds = time.perf_counter() - start
        self.epoch += 1
        metrics = {"epoch": self.epoch, "train_loss": train_loss, "lr": self.scheduler.get_last_lr()[0]}
        if self.val_table is not None:
            per_target = self.evaluate(self.val_table)
            val_mae = selection_mae(per_target, self.normalizer.std.cpu().numpy())
            metrics["val_mae"] = val_mae
            metrics.update({f"val_mae_{name}": float(v) for name, v in zip(self.target_names, per_target)})
            if val_mae < self.best_val_mae:  # NaN (a diverged model) never improves
                self.best_val_mae, self.best_epoch, self.bad_epochs = val_mae, self.epoch, 0
                self.best_state = {"model": _clone(self.model), "loss": _clone(self.loss)}
            else:
                self.bad_epochs += 1
        else:
            self.best_epoch = self.epoch
        metrics["seconds"] = time.perf_counter() - start
        metrics["structures_per_s"] = seen / train_seconds if train_seconds > 0 else float("nan")
        self.history.append(metrics)
        patience = self.config.patience
        stop_early = self.val_table is not None and patience is not None and self.bad_epochs >= patience
        self.finished = stop_early or self.epoch >= self.start_epoch + self.config.epochs
        return metrics

    def result(self) -> TrainResult:
        """Restore the best weights (the last ones without validation data) and write ``best.pt``."""
        if self.val_table is not None:
            self.model.load_state_dict(self.best_state["model"])
            self.loss.load_state_dict(self.best_state["loss"])
        self.model.eval()
        best = next((m for m in self.history if m["epoch"] == self.best_epoch), {})
        metrics = {key: value for key, value in best.items() if key.startswith("val_")}
        checkpoint = None
        if self.checkpoint_dir is not None:
            checkpoint = save_checkpoint(
                self.checkpoint_dir / BEST, self.model, self.normalizer, metrics,
                {"train_config": self.config.as_dict(), "best_epoch": self.best_epoch,
                 "loss_state": self.loss.state_dict(), "history": self.history},
                featurizer_settings=self.featurizer_settings,
            )
        stopped_early = self.epoch < self.start_epoch + self.config.epochs
        best_val_mae = self.best_val_mae if self.val_table is not None else float("nan")
        return TrainResult(self.model, self.normalizer, self.loss, self.history, self.best_epoch,
                           best_val_mae, stopped_early, checkpoint, metrics)

    def save_last(self, path: Path) -> None:
        """Everything :meth:`load_last` needs to continue exactly where this epoch ended (atomic write)."""
        write_state(path, {
            "epoch": self.epoch,
            "start_epoch": self.start_epoch,
            "finished": self.finished,
            "model_name": self.model.name,
            "model_config": dict(self.model.config),
            "train_config": self.config.as_dict(),
            "model": self.model.state_dict(),
            "loss": self.loss.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "normalizer": self.normalizer.state_dict(),
            "best_val_mae": self.best_val_mae,
            "best_epoch": self.best_epoch,
            "best_state": self.best_state,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
            "rng": _rng_state(),
        })

    def load_last(self, path: Path) -> None:
        """Restore the state written by :meth:`save_last` (same model and trajectory settings required)."""
        state = read_state(path)  # on CPU; load_state_dict copies onto the model's device
        _check_resumable(state, self.model, self.config, path)
        self.model.load_state_dict(state["model"])
        self.loss.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.normalizer = TargetNormalizer.from_state_dict(state["normalizer"]).to(self.device)
        self.epoch, self.finished = state["epoch"], state["finished"]
        self.start_epoch = state.get("start_epoch", 0)  # last.pt of a run begun before warm restarts existed
        self.best_val_mae, self.best_epoch = state["best_val_mae"], state["best_epoch"]
        self.best_state, self.bad_epochs = state["best_state"], state["bad_epochs"]
        self.history = state["history"]
        _set_rng_state(state["rng"])


def train_model(
    model: PropertyModel,
    train_set: Dataset,
    val_set: Dataset | None,
    config: TrainConfig,
    *,
    loss: nn.Module | None = None,
    resume: bool = False,
    on_epoch_end: EpochCallback | None = None,
    featurizer_settings: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train ``model`` (see :class:`Trainer`); ``loss`` defaults to :func:`build_loss` of the config."""
    trainer = Trainer(model, train_set, val_set, config, loss, featurizer_settings)
    return trainer.fit(resume=resume, on_epoch_end=on_epoch_end)
