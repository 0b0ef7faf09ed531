"""``hybridmat tune JOB.yaml``: an ASHA search over a job's ``tune.space`` on Ray Tune, best job written back.

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
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from hybridmat.atomic_io import atomic_write_bytes
from hybridmat.config import JobConfig, JobFileError, SearchDimension
from hybridmat.distributed.runtime import ray_session
from hybridmat.distributed.search_space import (
    apply_sample,
    changed_keys,
    check_space,
    decode,
    encoded_choices,
    search_identity,
    trained_model,
    write_best_job,
)
from hybridmat.models.base import model_class
from hybridmat.models.late_fusion import LateFusion, LateFusionHyper
from hybridmat.training.checkpoint import predict_table
from hybridmat.training.ensemble import member_trainer
from hybridmat.training.metrics import mae, selection_mae
from hybridmat.training.trainer import LAST, Trainer
from hybridmat.workflows.fitting import SplitData, fit_rf
from hybridmat.workflows.train import job_split_data, train_config

METRIC = "val_mae"
IDENTITY_FILE = "search.json"


class SearchInterrupted(RuntimeError):
    """The search stopped (Ctrl+C) before every trial finished; its state is stored, ready to resume."""


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
    """The trials (best first), the winner, where it was written, and whether a stored search was resumed."""

    trials: list[TrialSummary]
    best: TrialSummary
    best_job: Path
    experiment: Path
    resumed: bool


def trial_epochs(job: JobConfig) -> int:
    """Epochs every trial may run: ``tune.max_epochs``, else ``train.epochs``."""
    return job.tune.max_epochs or job.train.epochs


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


def fused_metrics(trainer: Trainer, rf_val: np.ndarray, hyper: dict[str, Any]) -> dict[str, float]:
    """Validation MAE (mean and per target) of the forest fused with the trainer's current graph model,
    fused exactly as ``hybridmat train`` fuses: the job's α, else the α (or stacking) fitted on validation."""
    table = trainer.val_table
    gnn_val = predict_table(trainer.model, trainer.normalizer, table, trainer.config.eval_batch_size)
    fusion = LateFusion(hyper.get("method", "alpha"), fixed_alpha=hyper.get("alpha"))
    per_target = mae(table.y, fusion.fit(rf_val, gnn_val, table.y).predict(rf_val, gnn_val))
    names = trainer.target_names
    return {METRIC: selection_mae(per_target, trainer.normalizer.std.cpu().numpy()),
            **{f"{METRIC}_{n}": float(v) for n, v in zip(names, per_target)},
            **{f"alpha_{n}": float(a) for n, a in zip(names, fusion.alpha)}}


def run_trial(config: dict[str, Any], *, job: JobConfig, data: SplitData, rf_val: np.ndarray | None) -> None:
    """One Tune trial: train the sampled job's torch model, ``tune.report`` validation MAE every epoch."""
    from ray import tune

    trial_job = apply_sample(job, decode(job.tune.space, config))
    name, hyper = trained_model(trial_job)
    if model_class(name).needs_line_graph and not data.train.line_graph:
        data = data.with_line_graph()
    threads = trial_job.train.num_threads or max(1, int(job.tune.cpus_per_trial))
    with tempfile.TemporaryDirectory(prefix="hybridmat-trial-") as scratch:
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:  # a resumed trial: continue after its last reported epoch
            with checkpoint.as_directory() as saved:
                shutil.copy(Path(saved) / LAST, Path(scratch) / LAST)
        settings = replace(train_config(trial_job), epochs=trial_epochs(job), num_threads=threads,
                           checkpoint_dir=scratch)
        trainer = member_trainer(name, hyper, data.train, data.val, settings, settings.seed,
                                 featurizer_settings=trial_job.features.settings().as_dict())

        def report(epoch: int, metrics: dict[str, float]) -> None:
            values = {"epoch": epoch, "finished": trainer.finished,
                      **{key: value for key, value in metrics.items() if key.startswith(METRIC)}}
            if rf_val is not None:  # rank on the fused MAE, keep the graph parent's
                values.update({f"{METRIC}_graph": metrics[METRIC],
                               **fused_metrics(trainer, rf_val, trial_job.model.hyper)})
            tune.report(values, checkpoint=tune.Checkpoint.from_directory(scratch))

        trainer.fit(resume=True, on_epoch_end=report)


def stored_search(job: JobConfig, experiment: Path) -> bool:
    """Whether ``experiment`` holds a search to resume; :class:`JobFileError` if another job started it."""
    from ray import tune

    if not tune.Tuner.can_restore(experiment):
        return False
    stored = experiment / IDENTITY_FILE
    changed = changed_keys(json.loads(stored.read_text()), search_identity(job)) if stored.exists() else []
    if changed:
        raise JobFileError(f"the search in {experiment} was started from another job (changed: {changed}); "
                           "run `hybridmat tune --restart` to start over, or give the job another name")
    return True


def new_tuner(job: JobConfig, experiment: Path, trainable: Any, verbose: int) -> Any:
    """A Tuner for the job's search stored under ``experiment`` (ASHA on the epoch, one checkpoint kept)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    atomic_write_bytes(experiment / IDENTITY_FILE, json.dumps(search_identity(job), indent=2).encode())
    settings = job.tune
    scheduler = ASHAScheduler(time_attr="epoch", max_t=trial_epochs(job), grace_period=settings.grace_period,
                              reduction_factor=settings.reduction_factor)
    return tune.Tuner(
        trainable, param_space=param_space(settings.space),
        tune_config=tune.TuneConfig(
            metric=METRIC, mode="min", scheduler=scheduler, num_samples=settings.num_samples,
            search_alg=search_algorithm(settings.searcher, job.train.seed),
            max_concurrent_trials=settings.max_concurrent, reuse_actors=True),
        run_config=tune.RunConfig(name=experiment.name, storage_path=str(experiment.parent), verbose=verbose,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    )


def summarise(results: Any, epochs: int) -> list[TrialSummary]:
    """One :class:`TrialSummary` per trial of a Tune ``ResultGrid``, best validation MAE first (ties: id)."""
    trials = []
    for result in results:
        history = result.metrics_dataframe
        trial_id = (result.metrics or {}).get("trial_id") or Path(result.path).name
        if history is None or METRIC not in history or history[METRIC].isna().all():
            status = "error" if result.error else "no result"
            trials.append(TrialSummary(trial_id, result.config, math.nan, 0, 0, status))
            continue
        best = history.loc[history[METRIC].idxmin()]
        last = history.iloc[-1]
        status = ("error" if result.error else "completed" if int(last["epoch"]) >= epochs
                  else "patience" if bool(last["finished"]) else "ASHA stop")
        trials.append(TrialSummary(trial_id, result.config, float(best[METRIC]), int(best["epoch"]),
                                   int(last["epoch"]), status))
    return sorted(trials, key=lambda t: (math.isnan(t.best_val_mae), t.best_val_mae, t.trial_id))


def trial_table(trials: list[TrialSummary], keys: list[str], title: str) -> Table:
    """The trials as a rich table: sampled values, best validation MAE (epoch), epochs run, status
    (completed, ASHA stop, patience: the trainer's early stopping, or error)."""
    table = Table(title=title)
    leaves = [key.rsplit(".", 1)[-1] for key in keys]
    short = leaves if len(set(leaves)) == len(leaves) else keys
    for column in ["trial", *short, "best val MAE", "best epoch", "epochs", "status"]:
        table.add_column(column, justify="left" if column in ("trial", "status") else "right", no_wrap=True)
    for trial in trials:
        values = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in (trial.config.get(k) for k in keys)]
        table.add_row(trial.trial_id, *values, f"{trial.best_val_mae:.4f}", str(trial.best_epoch),
                      str(trial.epochs), trial.status)
    return table


def run_search(
    job: JobConfig, *, address: str | None = None, restart: bool = False, command: str = "hybridmat tune",
    verbose: int = 1, progress: bool = True, log: Callable[[str], None] = print,
) -> SearchResult:
    """Run the job's search, or resume the one stored under ``tune.storage/<name>``; write the best job.

    ``verbose`` is Ray Tune's progress output (0-3), ``progress`` the featurization progress bar.
    """
    from ray import tune

    job.require("tune", "data", "model", "tune")
    settings, epochs = job.tune, trial_epochs(job)
    if settings.grace_period > epochs:
        raise JobFileError(f"tune.grace_period {settings.grace_period} exceeds the {epochs} epochs per trial")
    check_space(job)
    experiment = Path(settings.storage).resolve() / job.name
    if restart:
        shutil.rmtree(experiment, ignore_errors=True)
    resume = stored_search(job, experiment)
    data = job_split_data(job, progress)
    rf_val = None
    if issubclass(model_class(job.model.name), LateFusion):  # the forest parent is fitted once, here
        rf_val = fit_rf(data, LateFusionHyper(**job.model.hyper).rf, None).predict(data.val)[0]
    with ray_session(address):
        trainable = tune.with_resources(tune.with_parameters(run_trial, job=job, data=data, rf_val=rf_val),
                                        {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial})
        if resume:
            log(f"resuming the search stored in {experiment}")
            tuner = tune.Tuner.restore(str(experiment), trainable, resume_unfinished=True,
                                       resume_errored=True)
        else:
            tuner = new_tuner(job, experiment, trainable, verbose)
        # One kept checkpoint per trial forces an experiment snapshot per epoch: small, so not worth a warning.
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
        results = tuner.fit()
    if results.num_terminated + results.num_errors < settings.num_samples:
        raise SearchInterrupted(f"the search stopped before its {settings.num_samples} trials finished; "
                                f"its state is in {experiment}: run the same command again to resume")
    trials = summarise(results, epochs)
    if math.isnan(trials[0].best_val_mae):
        raise RuntimeError(f"no trial of {experiment} reported a validation MAE; see the trial errors there")
    path = Path(settings.best_job) if settings.best_job else experiment / "best.yaml"
    _write_best(job, trials, path, f"`{command}` (Ray Tune search in {experiment})")
    return SearchResult(trials, trials[0], path, experiment, resume)


def _write_best(job: JobConfig, trials: list[TrialSummary], path: Path, search: str) -> None:
    """The best trial's values applied onto ``job``, with a header naming the search and the result."""
    best, sample = trials[0], decode(job.tune.space, trials[0].config)
    write_best_job(job, sample, path, [
        f"Best of {len(trials)} trials of {search}.",
        f"Trial {best.trial_id}: validation MAE {best.best_val_mae:.5f} at epoch {best.best_epoch} of "
        f"{trial_epochs(job)} per trial; train.epochs as in the searched job.",
        "Searched values: " + ", ".join(f"{key}={value}" for key, value in sample.items()),
        f"Train it: hybridmat train {path}",
    ])

