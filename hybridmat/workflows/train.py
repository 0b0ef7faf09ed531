"""``hybridmat train JOB.yaml``: featurize (resumable), split, fit, select on val, report on test."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hybridmat.config import JobConfig
from hybridmat.data.source_strings import open_source
from hybridmat.workflows.fitting import (
    CATEGORIES, Fitted, MemberRunner, SplitData, evaluate, fit_late_fusion, fit_rf, fit_torch, is_torch_model,
    late_fusion_predictor, load_split_data, rf_predictor, split_ids, write_json, write_predictions,
)
from hybridmat.features.pipeline import featurize_to_store
from hybridmat.features.store import FeatureStore
from hybridmat.models.base import MODEL_REGISTRY
from hybridmat.models.late_fusion import LateFusion
from hybridmat.models.rf import RF_NAME, RandomForestModel
from hybridmat.workflows.comparison import parity_figure
from hybridmat.training.ensemble import Ensemble
from hybridmat.training.trainer import TrainConfig


def train_config(job: JobConfig) -> TrainConfig:
    """The trainer settings of a job file's ``train`` section."""
    t = job.train
    return TrainConfig(
        epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, weight_decay=t.weight_decay, schedule=t.schedule,
        patience=t.patience, seed=t.seed, device=t.device, amp=t.amp, num_threads=t.num_threads,
        loss_weighting=t.loss_weighting, loss_weights=None if t.loss_lambdas is None else tuple(t.loss_lambdas),
    )


def feature_store(job: JobConfig, progress: bool = True) -> FeatureStore:
    """The job's feature store, featurizing the whole source first if needed (resumable, idempotent).

    Rows with a missing label are kept (as NaN) so one store serves single- and multi-target jobs.
    """
    source_path = job.data.source.split("?")[0]
    store = Path(job.data.store or Path("runs/features") / Path(source_path).stem)
    featurize_to_store(open_source(job.data.source), store, spec=job.data.source,
                       settings=job.features.settings(), require_targets=False, progress=progress)
    return FeatureStore(store)


def splits_file(job: JobConfig) -> Path | None:
    """``data.splits``, else ``splits.json`` beside the source file when it exists."""
    if job.data.splits:
        return Path(job.data.splits)
    candidate = Path(job.data.source.split("?")[0]).with_name("splits.json")
    return candidate if candidate.exists() else None


@dataclass
class JobResult:
    """Test-split metric rows and the fitted model."""

    rows: list[dict[str, Any]]
    fitted: Fitted
    output: Path


def fit_by_name(name: str, hyper: dict[str, Any], data: SplitData, config: TrainConfig, members: int,
                output: Path, featurizer_settings: dict[str, Any] | None = None,
                log: Callable[[str], None] | None = None, runner: MemberRunner | None = None) -> Fitted:
    """Fit any model the registry or :data:`NON_TORCH_MODELS` knows, writing artefacts under ``output``.

    ``runner`` trains a torch model's ensemble members (default: one after another in this process).
    """
    if name == RF_NAME:
        return fit_rf(data, hyper, output)
    if name == "late_fusion":
        graph_name = hyper.get("graph_model", "cgcnn")
        rf = fit_rf(data, hyper.get("rf", {}), output / "rf")
        gnn = fit_by_name(graph_name, hyper.get("graph_hyper", {}), data, config, members, output / graph_name,
                          featurizer_settings, log, runner)
        fused = fit_late_fusion(rf, gnn, data, hyper.get("method", "alpha"), hyper.get("alpha"))
        write_json(output / "late_fusion.json", fused.details)
        return fused
    if not is_torch_model(name):
        raise ValueError(f"unknown model {name!r}")
    if MODEL_REGISTRY[name].needs_line_graph and not data.train.line_graph:
        data = data.with_line_graph()
    return fit_torch(name, hyper, data, config, members, output, featurizer_settings, log, runner)


def load_fitted(name: str, output: Path) -> Fitted:
    """A model trained earlier by :func:`fit_by_name` into ``output``, ready to predict."""
    if name == RF_NAME:
        model = RandomForestModel.load(output / "rf.joblib")
        return Fitted(RF_NAME, rf_predictor(model), 0.0, 0)
    if name == "late_fusion":
        details = json.loads((output / "late_fusion.json").read_text())
        rf, gnn = load_fitted(RF_NAME, output / "rf"), load_fitted(details["graph_model"], output / details["graph_model"])
        fusion = LateFusion(details["fusion"]["method"], np.asarray(details["fusion"]["alpha"]),
                            np.asarray(details["fusion"]["weights"]))
        return Fitted(name, late_fusion_predictor(rf, gnn, fusion), 0.0, gnn.parameters, details)
    checkpoints = sorted(output.glob("member-*/best.pt"))
    if not checkpoints:
        raise FileNotFoundError(f"no trained {name} in {output} (member-*/best.pt); run `hybridmat train` first")
    ensemble = Ensemble.from_checkpoints(checkpoints)
    parameters = sum(p.numel() for p in ensemble.members[0].model.parameters())
    return Fitted(name, ensemble.predict, 0.0, parameters, {"checkpoints": [str(c) for c in checkpoints]})


def job_split_data(job: JobConfig, progress: bool = True) -> SplitData:
    """The job's train/val/test datasets (featurizing first if needed)."""
    store = feature_store(job, progress)
    ids = split_ids(store, job.data.split, splits_file(job), job.data.split_seed)
    data = load_split_data(store, ids, job.data.targets)
    if job.model.name in MODEL_REGISTRY and MODEL_REGISTRY[job.model.name].needs_line_graph:
        return data.with_line_graph()
    return data


def run_train_job(job: JobConfig, progress: bool = True, log: Callable[[str], None] | None = None,
                  runner: MemberRunner | None = None) -> JobResult:
    """Run a training job end to end; write metrics, predictions and a parity plot to ``job.output``.

    ``runner`` trains ensemble members (e.g. concurrently on Ray actors); default: sequentially here.
    """
    job.require("train", "data", "model")
    output = Path(job.output)
    output.mkdir(parents=True, exist_ok=True)
    data = job_split_data(job, progress)
    fitted = fit_by_name(job.model.name, dict(job.model.hyper), data, train_config(job), job.ensemble, output,
                         job.features.settings().as_dict(), log, runner)
    rows, mean, std = evaluate(fitted, data.test)
    val_rows, _, _ = evaluate(fitted, data.val)
    write_predictions(output / "predictions_test.parquet", data.test, mean, std)
    for t, target in enumerate(data.target_names):
        parity_figure({job.model.name: (data.test.targets.numpy()[:, t], mean[:, t])},
                      output / f"parity_{target}.png", target)
    details = {k: v for k, v in fitted.details.items() if k != "ensemble"}
    write_json(output / "metrics.json", {
        "job": job.model_dump(), "category": CATEGORIES.get(job.model.name), "test": rows, "val": val_rows,
        "dropped_ids": data.dropped, "sizes": {p: len(data.part(p)) for p in ("train", "val", "test")},
        "details": details,
    })
    return JobResult(rows, fitted, output)
