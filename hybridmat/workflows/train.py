"""``hybridmat train JOB.yaml``: featurize (resumable), split, fit, select on val, report on test."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybridmat.config import JobConfig, TrainSection
from hybridmat.data.source_strings import open_source
from hybridmat.features.pipeline import featurize_to_store
from hybridmat.features.store import FeatureStore
from hybridmat.machine import describe_machine
from hybridmat.models.base import model_class, validate_hyper
from hybridmat.models.late_fusion import LateFusion, LateFusionHyper
from hybridmat.models.rf import FILE as RF_FILE
from hybridmat.models.rf import LEGACY_FILE as RF_LEGACY_FILE
from hybridmat.models.rf import RandomForestModel
from hybridmat.training.ensemble import Ensemble
from hybridmat.training.trainer import TrainConfig
from hybridmat.workflows.comparison import parity_figure
from hybridmat.workflows.fitting import (
    Fitted,
    MemberRunner,
    SplitData,
    evaluate,
    fit_late_fusion,
    fit_rf,
    fit_torch,
    late_fusion_predictor,
    load_split_data,
    rf_predictor,
    split_ids,
    write_json,
    write_predictions,
)

#: Job-file keys of the ``train`` section whose :class:`TrainConfig` field has another name.
TRAIN_CONFIG_NAMES = {"loss_lambdas": "loss_weights"}
LATE_FUSION_FILE = "late_fusion.json"


def train_config(job: JobConfig) -> TrainConfig:
    """The trainer settings of a job file's ``train`` section: every field carried over by name (the
    section is the job-file face of :class:`TrainConfig`; ``tests/test_config.py`` keeps the two in step)."""
    return TrainConfig(**{TRAIN_CONFIG_NAMES.get(key, key): getattr(job.train, key)
                          for key in TrainSection.model_fields})


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
    """Fit any registered model (``hyper`` checked against its schema first), writing artefacts under ``output``.

    ``runner`` trains a torch model's ensemble members (default: one after another in this process).
    """
    cls, hyper = model_class(name), validate_hyper(name, hyper)
    if issubclass(cls, RandomForestModel):
        return fit_rf(data, hyper, output)
    if issubclass(cls, LateFusion):
        parents = LateFusionHyper(**hyper)
        rf = fit_rf(data, parents.rf, output / RandomForestModel.name)
        gnn = fit_by_name(parents.graph_model, parents.graph_hyper, data, config, members,
                          output / parents.graph_model, featurizer_settings, log, runner)
        fused = fit_late_fusion(rf, gnn, data, parents.method, parents.alpha)
        LateFusion.from_dict(fused.details["fusion"]).save(output / LATE_FUSION_FILE, graph_model=gnn.name)
        return fused
    if cls.needs_line_graph and not data.train.line_graph:
        data = data.with_line_graph()
    return fit_torch(name, hyper, data, config, members, output, featurizer_settings, log, runner)


def load_fitted(name: str, output: Path, trust_pickle: bool = False) -> Fitted:
    """A model trained earlier by :func:`fit_by_name` into ``output``, ready to predict.

    A forest saved in the legacy pickle format loads only with ``trust_pickle`` (it would run code otherwise).
    """
    cls = model_class(name)
    if issubclass(cls, RandomForestModel):
        path = output / RF_FILE
        if not path.exists() and (output / RF_LEGACY_FILE).exists():
            path = output / RF_LEGACY_FILE
        return Fitted(name, rf_predictor(RandomForestModel.load(path, trust_pickle)), 0.0, 0)
    if issubclass(cls, LateFusion):
        fusion, details = LateFusion.load(output / LATE_FUSION_FILE)
        graph_model = details["graph_model"]
        rf = load_fitted(RandomForestModel.name, output / RandomForestModel.name, trust_pickle)
        gnn = load_fitted(graph_model, output / graph_model)
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
    return data.with_line_graph() if model_class(job.model.name).needs_line_graph else data


def run_train_job(job: JobConfig, progress: bool = True, log: Callable[[str], None] | None = None,
                  runner: MemberRunner | None = None, command: str | None = None) -> JobResult:
    """Run a training job end to end; write metrics, predictions and a parity plot to ``job.output``.

    ``runner`` trains ensemble members (e.g. concurrently on Ray actors); default: sequentially here.
    ``command`` (the command line that ran it) and the machine are recorded for the model card.
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
        "job": job.model_dump(), "category": model_class(job.model.name).category, "test": rows, "val": val_rows,
        "dropped_ids": data.dropped, "sizes": {p: len(data.part(p)) for p in ("train", "val", "test")},
        "details": details, "command": command, "machine": describe_machine(),
    })
    return JobResult(rows, fitted, output)
