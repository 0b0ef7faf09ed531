"""``hybridmat tune JOB.yaml``: an ASHA search over the job's ``tune.space`` on Ray Tune; the best job written back.

The driver checks the space, loads the split once (featurizing the store first if needed) and hands it to
every trial with ``tune.with_parameters`` (one copy in the object store). A trial is a plain function of
its sampled configuration: it trains the job's torch model (for ``late_fusion`` the graph parent, fused
with the forest fitted once in the driver) and calls ``tune.report`` after every epoch with the validation
MAE the trainer selects on: the mean over targets of the per-target MAE in original units (fused with the
trial's α, or the α fitted on validation, for late fusion). ASHA stops poor trials at its rungs. Each
report carries the trainer's ``last.pt`` as a Tune checkpoint, so an interrupted search resumes every
unfinished trial from its last epoch and never reruns a finished one.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from hybridmat.atomic_io import atomic_write_bytes
from hybridmat.config import JobConfig, JobFileError, SearchDimension, TuneSection, load_job
from hybridmat.distributed.runtime import ray_session
from hybridmat.distributed.search_space import (
    apply_sample, changed_keys, check_space, decode, encoded_choices, search_identity, trained_model,
    write_best_job,
)
from hybridmat.experiment import SplitData, fit_rf
from hybridmat.models.base import MODEL_REGISTRY, build_model
from hybridmat.models.late_fusion import LateFusion
from hybridmat.training.checkpoint import predict_table
from hybridmat.training.metrics import mae
from hybridmat.training.trainer import LAST, Trainer, TrainConfig, seed_everything
from hybridmat.workflow import job_split_data, train_config

METRIC = "val_mae"
IDENTITY_FILE = "search.json"


@dataclass
class TrialSummary:
    """One trial of a finished search: its sampled values and how far it got."""

    trial_id: str
    config: dict[str, Any]
    best_val_mae: float
    best_epoch: int
    epochs: int
    status: str


@dataclass
class SearchResult:
    """The trials (best first), the winner, where it was written, and whether an earlier search was resumed."""

    trials: list[TrialSummary]
    best: TrialSummary
    best_job: Path
    experiment: Path
    resumed: bool


def trial_epochs(tune: TuneSection, job: JobConfig) -> int:
    """Epochs every trial may run: ``tune.max_epochs``, else ``train.epochs``."""
    return tune.max_epochs or job.train.epochs


def param_space(space: dict[str, SearchDimension]) -> dict[str, Any]:
    """Tune domains for the dotted keys (choices of lists travel as JSON text, see :func:`decode`)."""
    from ray import tune

    def domain(dimension: SearchDimension) -> Any:
        if dimension.choice is not None:
            return tune.choice(encoded_choices(dimension))
        if dimension.randint is not None:
            return tune.randint(*dimension.randint)
        if dimension.loguniform is not None:
            return tune.loguniform(*dimension.loguniform)
        return tune.uniform(*dimension.uniform)

    return {key: domain(dimension) for key, dimension in space.items()}


def search_algorithm(searcher: str, seed: int) -> Any:
    """Optuna's TPE sampler (``optuna``, or ``auto`` when installed), else seeded random sampling."""
    from ray.tune.search.basic_variant import BasicVariantGenerator

    try:
        import optuna  # noqa: F401
    except ImportError:
        if searcher == "optuna":
            raise JobFileError("tune.searcher is 'optuna' but optuna is not installed: "
                               "`pip install optuna`, or use searcher 'auto' or 'random'") from None
        return BasicVariantGenerator(random_state=seed)
    if searcher == "random":
        return BasicVariantGenerator(random_state=seed)
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(seed=seed)


def _trainer(name: str, hyper: dict[str, Any], data: SplitData, config: TrainConfig) -> Trainer:
    """The trainer :func:`~hybridmat.training.ensemble.train_member` builds for member 0 (same seeding), kept
    so that each epoch's callback can read the current model."""
    dims = {"n_targets": len(data.target_names), "composition_dim": data.train.batch.composition.shape[1]}
    seed_everything(config.seed)
    return Trainer(build_model(name, **{**dims, **hyper}), data.train, data.val, config)


def fused_metrics(trainer: Trainer, rf_val: np.ndarray, hyper: dict[str, Any]) -> dict[str, float]:
    """Validation MAE (mean and per target) of the forest fused with the trainer's current graph model,
    fused exactly as ``hybridmat train`` fuses: the job's α, else the α (or stacking) fitted on validation."""
    y_val = trainer.val_table.y
    gnn_val = predict_table(trainer.model, trainer.normalizer, trainer.val_table, trainer.config.eval_batch_size)
    fusion = LateFusion(hyper.get("method", "alpha"), fixed_alpha=hyper.get("alpha")).fit(rf_val, gnn_val, y_val)
    per_target = mae(y_val, fusion.predict(rf_val, gnn_val))
    return {METRIC: float(np.nanmean(per_target)), "alpha": float(fusion.alpha[0]),
            **{f"{METRIC}_{name}": float(v) for name, v in zip(trainer.target_names, per_target)}}


def run_trial(config: dict[str, Any], *, job: JobConfig, data: SplitData, rf_val: np.ndarray | None) -> None:
    """One Tune trial: train the sampled job's torch model, ``tune.report`` validation MAE every epoch."""
    from ray import tune

    trial_job = apply_sample(job, decode(job.tune.space, config))
    name, hyper = trained_model(trial_job)
    if MODEL_REGISTRY[name].needs_line_graph and not data.train.line_graph:
        data = data.with_line_graph()
    threads = trial_job.train.num_threads or max(1, int(job.tune.cpus_per_trial))
    with tempfile.TemporaryDirectory(prefix="hybridmat-trial-") as scratch:
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:  # a resumed trial: continue after its last reported epoch
            with checkpoint.as_directory() as saved:
                shutil.copy(Path(saved) / LAST, Path(scratch) / LAST)
        settings = replace(train_config(trial_job), epochs=trial_epochs(job.tune, job), num_threads=threads,
                           checkpoint_dir=scratch)
        trainer = _trainer(name, hyper, data, settings)

        def report(epoch: int, metrics: dict[str, float]) -> None:
            values = {"epoch": epoch, "finished": trainer.finished,
                      **{key: value for key, value in metrics.items() if key.startswith(METRIC)}}
            if rf_val is not None:
                values.update({f"{METRIC}_graph": metrics[METRIC], **fused_metrics(trainer, rf_val, trial_job.model.hyper)})
            tune.report(values, checkpoint=tune.Checkpoint.from_directory(scratch))

        trainer.fit(resume=True, on_epoch_end=report)


def _tuner(job: JobConfig, experiment: Path, trainable: Any, verbose: int) -> tuple[Any, bool]:
    """The search stored in ``experiment`` restored (same job required), else a new one; and which it was."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    identity, stored = search_identity(job), experiment / IDENTITY_FILE
    if tune.Tuner.can_restore(experiment):
        changed = changed_keys(json.loads(stored.read_text()), identity) if stored.exists() else []
        if changed:
            raise JobFileError(f"the search in {experiment} was started from another job (changed: {changed}); "
                               "run `hybridmat tune --restart` to start over, or give the job another name")
        return tune.Tuner.restore(str(experiment), trainable, resume_unfinished=True, resume_errored=True), True
    atomic_write_bytes(stored, json.dumps(identity, indent=2).encode())
    settings, epochs = job.tune, trial_epochs(job.tune, job)
    scheduler = ASHAScheduler(time_attr="epoch", max_t=epochs, grace_period=settings.grace_period,
                              reduction_factor=settings.reduction_factor)
    return tune.Tuner(
        trainable, param_space=param_space(settings.space),
        tune_config=tune.TuneConfig(metric=METRIC, mode="min", scheduler=scheduler, num_samples=settings.num_samples,
                                    search_alg=search_algorithm(settings.searcher, job.train.seed),
                                    max_concurrent_trials=settings.max_concurrent, reuse_actors=True),
        run_config=tune.RunConfig(name=experiment.name, storage_path=str(experiment.parent), verbose=verbose,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    ), False


def summarise(results: Any, epochs: int) -> list[TrialSummary]:
    """One :class:`TrialSummary` per trial of a Tune ``ResultGrid``, best validation MAE first (ties: id)."""
    trials = []
    for result in results:
        history = result.metrics_dataframe
        trial_id = (result.metrics or {}).get("trial_id") or Path(result.path).name
        if history is None or METRIC not in history or history[METRIC].isna().all():
            trials.append(TrialSummary(trial_id, result.config, math.nan, 0, 0, "error" if result.error else "no result"))
            continue
        best = history.loc[history[METRIC].idxmin()]
        last = history.iloc[-1]
        status = ("error" if result.error else "completed" if int(last["epoch"]) >= epochs
                  else "early stop (patience)" if bool(last["finished"]) else "stopped by ASHA")
        trials.append(TrialSummary(trial_id, result.config, float(best[METRIC]), int(best["epoch"]),
                                   int(last["epoch"]), status))
    return sorted(trials, key=lambda t: (math.isnan(t.best_val_mae), t.best_val_mae, t.trial_id))


def trial_table(trials: list[TrialSummary], keys: list[str], title: str) -> Table:
    """The trials as a rich table: sampled values, best validation MAE (epoch), epochs run, status."""
    table = Table(title=title)
    for column in ["trial", *keys, "best val MAE", "best epoch", "epochs", "status"]:
        table.add_column(column, justify="left" if column in ("trial", "status") else "right")
    for trial in trials:
        values = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in (trial.config.get(k) for k in keys)]
        table.add_row(trial.trial_id, *values, f"{trial.best_val_mae:.4f}", str(trial.best_epoch),
                      str(trial.epochs), trial.status)
    return table


def run_search(job: JobConfig, *, address: str | None = None, restart: bool = False, command: str = "hybridmat tune",
               verbose: int = 1, progress: bool = True, log: Callable[[str], None] = print) -> SearchResult:
    """Run (or resume) the job's search and write the best configuration as a job file.

    ``verbose`` is Ray Tune's progress output (0-3); ``progress`` the featurization progress bar.
    """
    from ray import tune

    job.require("tune", "data", "model", "tune")
    settings, epochs = job.tune, trial_epochs(job.tune, job)
    if settings.grace_period > epochs:
        raise JobFileError(f"tune.grace_period ({settings.grace_period}) exceeds the epochs per trial ({epochs})")
    check_space(job)
    experiment = Path(settings.storage).resolve() / job.name
    if restart:
        shutil.rmtree(experiment, ignore_errors=True)
    data = job_split_data(job, progress)
    rf_val = None
    if job.model.name == "late_fusion":
        rf_val = fit_rf(data, job.model.hyper.get("rf", {}), None).predict(data.val)[0]
    with ray_session(address):
        trainable = tune.with_resources(tune.with_parameters(run_trial, job=job, data=data, rf_val=rf_val),
                                        {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial})
        tuner, resumed = _tuner(job, experiment, trainable, verbose)
        if resumed:
            log(f"resuming the search stored in {experiment}")
        trials = summarise(tuner.fit(), epochs)
    best = trials[0]
    if math.isnan(best.best_val_mae):
        raise RuntimeError(f"no trial of {experiment} reported a validation MAE; see the trial errors there")
    path = Path(settings.best_job) if settings.best_job else experiment / "best.yaml"
    searched = ", ".join(f"{k}={v}" for k, v in decode(settings.space, best.config).items())
    write_best_job(job, decode(settings.space, best.config), path, [
        f"Best of {len(trials)} trials of `{command}` (Ray Tune search in {experiment}).",
        f"Trial {best.trial_id}: validation MAE {best.best_val_mae:.5f} at epoch {best.best_epoch} of {epochs} "
        f"per trial; train.epochs as in the searched job.",
        f"Searched values: {searched}",
        f"Train it: hybridmat train {path}",
    ])
    return SearchResult(trials, best, path, experiment, resumed)


def tune_command(
    job_file: Annotated[Path, typer.Argument(help="Job file with a tune: section, e.g. jobs/tune_cpu_small.yaml.")],
    address: Annotated[str | None, typer.Option(
        help="Ray cluster to join (HOST:PORT, ray://HOST:PORT or auto); default: RAY_ADDRESS, else a local Ray.")] = None,
    restart: Annotated[bool, typer.Option(help="Discard the search stored under tune.storage/<name> and start over.")] = False,
) -> None:
    """Search tune.space with ASHA on Ray Tune (resuming an interrupted search); write the best job file."""
    console = Console()
    job = load_job(job_file)
    command = f"hybridmat tune {job_file}"
    result = run_search(job, address=address, restart=restart, command=command, log=console.print)
    console.print(trial_table(result.trials, list(job.tune.space), f"{job.name}: {METRIC} per trial ({command})"))
    console.print(f"best trial {result.best.trial_id}: {METRIC} {result.best.best_val_mae:.4f}; "
                  f"best job -> {result.best_job}")
