"""One experiment: fit a model by name on a train/val/test split, select on val, evaluate on test.

``hybridmat train`` and ``hybridmat bench models`` both go through here, so a benchmark row and a
trained job are produced by the same code.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from hybridmat.atomic_io import atomic_write_bytes, atomic_write_parquet
from hybridmat.data.splits import load_splits, random_split
from hybridmat.features.dataset import CrystalDataset
from hybridmat.features.store import FeatureStore
from hybridmat.models.base import model_class
from hybridmat.models.late_fusion import LateFusion
from hybridmat.models.rf import FILE as RF_FILE
from hybridmat.models.rf import RandomForestModel
from hybridmat.training.ensemble import Ensemble, Member, MemberSpec, member_specs, train_member
from hybridmat.training.metrics import regression_metrics
from hybridmat.training.trainer import TrainConfig, TrainResult

PARTS = ("train", "val", "test")


@dataclass
class SplitData:
    """Train/val/test datasets over the same targets, plus how many requested ids were unusable."""

    train: CrystalDataset
    val: CrystalDataset
    test: CrystalDataset
    target_names: list[str]
    dropped: dict[str, int] = field(default_factory=dict)

    def part(self, name: str) -> CrystalDataset:
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    def with_line_graph(self) -> SplitData:
        """The same rows with ALIGNN line graphs enabled."""
        return replace(self, **{p: CrystalDataset(self.part(p).batch, self.target_names, True) for p in PARTS})


def split_ids(
    store: FeatureStore, split: str | None, splits_file: Path | None, seed: int = 0
) -> dict[str, list[str]]:
    """Ids of train/val/test: a named split from ``splits.json``, else a seeded 80/10/10 split of the store."""
    if split is not None:
        if splits_file is None:
            raise ValueError(f"split {split!r} needs a splits.json (data.splits in the job file)")
        parts = load_splits(splits_file, split)
        missing = [p for p in PARTS if p not in parts]
        if missing:
            raise ValueError(f"split {split!r} in {splits_file} has no {missing} part(s)")
        return {p: parts[p] for p in PARTS}
    ids = store.read_table(["id"]).column("id").to_pylist()
    return random_split(ids, (0.8, 0.1, 0.1), seed=seed)


def load_split_data(
    store: FeatureStore, ids: Mapping[str, Sequence[str]], target_names: Sequence[str], line_graph: bool = False
) -> SplitData:
    """Datasets for each part; ids not in the store (see its errors) or with no label at all are dropped."""
    table = store.read_table()
    known = set(table.column("id").to_pylist())
    labels = np.column_stack([table.column(t).to_numpy() for t in target_names])
    labelled = {i for i, row in zip(table.column("id").to_pylist(), labels) if np.isfinite(row).any()}
    datasets, dropped = {}, {}
    for part in PARTS:
        usable = [i for i in ids[part] if i in known and i in labelled]
        dropped[part] = len(ids[part]) - len(usable)
        datasets[part] = CrystalDataset.from_table(table, target_names, usable, line_graph, where=str(store.path))
    return SplitData(**datasets, target_names=list(target_names), dropped=dropped)


@dataclass
class Fitted:
    """A fitted model of any kind: ``predict(dataset) -> (mean, std)`` in original units."""

    name: str
    predict: Callable[[CrystalDataset], tuple[np.ndarray, np.ndarray]]
    train_seconds: float
    parameters: int
    details: dict[str, Any] = field(default_factory=dict)


def fit_rf(data: SplitData, hyper: Mapping[str, Any], output: Path | None) -> Fitted:
    """The random forest on the training split's composition features."""
    started = time.perf_counter()
    model = RandomForestModel(**hyper).fit(data.train.batch.composition, data.train.targets.numpy())
    seconds = time.perf_counter() - started
    if output is not None:
        model.save(Path(output) / RF_FILE)

    nodes = sum(tree.tree_.node_count for forest in model.forests for tree in forest.estimators_)
    return Fitted(RandomForestModel.name, rf_predictor(model), seconds, 0, {"tree_nodes": int(nodes)})


def rf_predictor(model: RandomForestModel) -> Callable[[CrystalDataset], tuple[np.ndarray, np.ndarray]]:
    """``dataset -> (mean, per-tree std)`` of a forest on the dataset's composition features."""

    def predict(dataset: CrystalDataset) -> tuple[np.ndarray, np.ndarray]:
        X = dataset.batch.composition
        return model.predict(X), model.predict_std(X)

    return predict


def late_fusion_predictor(
    rf: Fitted, gnn: Fitted, fusion: LateFusion
) -> Callable[[CrystalDataset], tuple[np.ndarray, np.ndarray]]:
    """``dataset -> (fused mean, graph model's std)``."""

    def predict(dataset: CrystalDataset) -> tuple[np.ndarray, np.ndarray]:
        (rf_mean, _), (gnn_mean, gnn_std) = rf.predict(dataset), gnn.predict(dataset)
        return fusion.predict(rf_mean, gnn_mean), gnn_std

    return predict


#: Trains the members of an ensemble: ``(name, hyper, data, config, specs, featurizer_settings) -> results``.
MemberRunner = Callable[[str, Mapping[str, Any], SplitData, TrainConfig, Sequence[MemberSpec],
                         Mapping[str, Any] | None], list[TrainResult]]


def fit_torch(
    name: str,
    hyper: Mapping[str, Any],
    data: SplitData,
    config: TrainConfig,
    members: int = 1,
    output: Path | None = None,
    featurizer_settings: Mapping[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
    runner: MemberRunner | None = None,
) -> Fitted:
    """Train ``members`` seeds of a registered torch model (early stopping on val) as one ensemble.

    Members train one after another here, or as ``runner`` does it (e.g. concurrently on Ray actors).
    ``log`` receives one line per epoch (member, epoch, train loss, validation MAE, throughput).
    """
    started = time.perf_counter()
    specs = member_specs(config, members, output)
    if runner is not None:
        results = runner(name, hyper, data, config, specs, featurizer_settings)
    else:
        results = [
            train_member(name, hyper, data.train, data.val, spec.config(config),
                         spec.seed, resume=spec.checkpoint_dir is not None, featurizer_settings=featurizer_settings,
                         on_epoch_end=None if log is None else epoch_logger(log, name, k))
            for k, spec in enumerate(specs)
        ]
    seconds = time.perf_counter() - started
    ensemble = Ensemble([Member(r.model, r.normalizer) for r in results])
    parameters = sum(p.numel() for p in results[0].model.parameters())
    return Fitted(name, lambda dataset: ensemble.predict(dataset), seconds, parameters, {
        "best_epochs": [r.best_epoch for r in results],
        "epochs_run": [len(r.history) for r in results],
        "curves": [validation_curve(r.history) for r in results],
        "member_seconds": [sum(m["seconds"] for m in r.history) for r in results],
        "checkpoints": [str(r.checkpoint) for r in results if r.checkpoint],
        "ensemble": ensemble,
    })


def validation_curve(history: list[dict[str, float]]) -> list[list[float]]:
    """``[cumulative seconds, validation MAE]`` after each epoch of one training run (empty without validation)."""
    curve, elapsed = [], 0.0
    for metrics in history:
        elapsed += metrics["seconds"]
        if "val_mae" in metrics:
            curve.append([elapsed, metrics["val_mae"]])
    return curve


def epoch_logger(log: Callable[[str], None], name: str, member: int) -> Callable[[int, dict[str, float]], None]:
    """A trainer callback that reports each epoch as one line."""

    def report(epoch: int, metrics: dict[str, float]) -> None:
        per_target = {k.removeprefix("val_mae_"): v for k, v in metrics.items() if k.startswith("val_mae_")}
        val = (f"val MAE {metrics.get('val_mae', float('nan')):.4f}" if len(per_target) < 2 else
               "val MAE " + ", ".join(f"{t} {v:.4f}" for t, v in per_target.items())
               + f" (selection {metrics['val_mae']:.3f} σ)")
        log(f"{name} member {member} epoch {epoch}: loss {metrics['train_loss']:.4f}, {val}, "
            f"{metrics['structures_per_s']:,.0f} structures/s")

    return report


def fit_late_fusion(
    rf: Fitted, gnn: Fitted, data: SplitData, method: str = "alpha", alpha: float | None = None
) -> Fitted:
    """α·RF + (1−α)·GNN (or stacking) fitted on the parents' VALIDATION predictions; a given ``alpha``
    (the job's ``model.hyper.alpha``, e.g. a tuned value) is used as is instead of the grid search."""
    started = time.perf_counter()
    rf_val, gnn_val = rf.predict(data.val)[0], gnn.predict(data.val)[0]
    fusion = LateFusion(method, fixed_alpha=alpha).fit(rf_val, gnn_val, data.val.targets.numpy())
    seconds = rf.train_seconds + gnn.train_seconds + time.perf_counter() - started
    return Fitted(LateFusion.name, late_fusion_predictor(rf, gnn, fusion), seconds, gnn.parameters,
                  {"fusion": fusion.as_dict(), "graph_model": gnn.name})


def evaluate(fitted: Fitted, dataset: CrystalDataset,
             model_label: str | None = None) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """Test-split metric rows (one per target) and the ``(mean, std)`` predictions."""
    mean, std = fitted.predict(dataset)
    metrics = regression_metrics(dataset.targets.numpy(), mean, dataset.target_names)
    label = model_label or fitted.name
    rows = [
        {"model": label, "category": model_class(fitted.name).category, "target": target,
         "mae": metrics[target]["mae"], "rmse": metrics[target]["rmse"], "r2": metrics[target]["r2"],
         "n": int(np.isfinite(dataset.targets.numpy()[:, t]).sum()),
         "train_seconds": fitted.train_seconds, "parameters": fitted.parameters}
        for t, target in enumerate(dataset.target_names)
    ]
    return rows, mean, std


def write_predictions(path: Path, dataset: CrystalDataset, mean: np.ndarray, std: np.ndarray) -> None:
    """Parquet of ``id, formula, <target>, <target>_mean, <target>_std`` per test structure."""
    columns: dict[str, Any] = {"id": dataset.ids, "formula": dataset.batch.formulas}
    for t, name in enumerate(dataset.target_names):
        columns[name] = dataset.targets.numpy()[:, t].astype(np.float64)
        columns[f"{name}_mean"] = mean[:, t].astype(np.float64)
        columns[f"{name}_std"] = std[:, t].astype(np.float64)
    atomic_write_parquet(pa.table(columns), path)


def write_json(path: Path, payload: Any) -> None:
    """Pretty JSON, atomically."""
    atomic_write_bytes(Path(path), json.dumps(payload, indent=2, default=str).encode())

