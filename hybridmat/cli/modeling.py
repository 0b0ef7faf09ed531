"""Training-side commands: train, evaluate, tune, export, and the model-comparison report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hybridmat.cli.apps import app
from hybridmat.console import console, invocation


@app.command()
def train(
    job_file: Annotated[Path, typer.Argument(help="Job file (YAML), e.g. jobs/train_cpu_small.yaml.")],
    quiet: Annotated[bool, typer.Option(help="No progress bars.")] = False,
    ray_members: Annotated[bool, typer.Option("--ray", help="Train ensemble members concurrently, one Ray actor each "
                                              "(1/K of a GPU each where there are GPUs).")] = False,
    address: Annotated[str | None, typer.Option(help="Ray cluster for --ray "
                                                "(default: RAY_ADDRESS, else a local Ray).")] = None,
) -> None:
    """Train the job's model on its split (select on val), report test MAE/RMSE/R², write artefacts."""
    from contextlib import nullcontext

    from hybridmat.config import load_job
    from hybridmat.workflows.comparison import comparison_table
    from hybridmat.workflows.train import run_train_job

    job = load_job(job_file)
    runner, session = None, nullcontext()
    if ray_members or address:
        from hybridmat.distributed.runtime import ray_session
        from hybridmat.distributed.train import train_members_on_ray

        runner, session = train_members_on_ray, ray_session(address)
    with session:
        result = run_train_job(job, progress=not quiet, log=None if quiet else console.log, runner=runner,
                               command=invocation())
    console.print(comparison_table(result.rows, title=f"{job.name}: test split ({invocation()})"))
    console.print(f"artefacts in {result.output}")


@app.command()
def evaluate(
    job_file: Annotated[Path, typer.Argument(help="Job file whose model to evaluate.")],
    matbench: Annotated[str | None, typer.Option(help="Run the Matbench protocol on this task instead "
                                                 "(trains per fold).")] = None,
    folds: Annotated[str | None, typer.Option(help="Comma-separated Matbench folds (default: all five).")] = None,
    out: Annotated[Path | None, typer.Option(help="Matbench results file "
                                             "(default: <job output>/matbench_<task>.json).")] = None,
    trust_pickle: Annotated[bool, typer.Option(help="Load a forest saved in the old pickle format (rf.joblib), "
                                               "which runs code from the file: only for files you made.")] = False,
) -> None:
    """Held-out MAE/RMSE/R² of a trained job on its test split, or the Matbench fold protocol with task.record."""
    from hybridmat.config import load_job
    from hybridmat.workflows.comparison import comparison_table
    from hybridmat.workflows.fitting import evaluate as evaluate_fitted
    from hybridmat.workflows.train import job_split_data, load_fitted

    job = load_job(job_file)
    job.require("evaluate", "data", "model")
    if matbench:
        from hybridmat.workflows.matbench import run_matbench

        out = out or Path(job.output) / f"{matbench}.json"
        chosen = [int(f) for f in folds.split(",")] if folds else None
        for score in run_matbench(job, matbench, chosen, out):
            console.print(f"fold {score['fold']}: MAE {score['mae']:.4f} on {score['n_test']} test structures "
                          f"({score['fallback_predictions']} could not be featurized: training mean)")
        console.print(f"matbench results -> {out}")
        return
    fitted = load_fitted(job.model.name, Path(job.output), trust_pickle)  # a refused file fails before featurizing
    data = job_split_data(job)
    rows = []
    for part in ("val", "test"):
        part_rows, _, _ = evaluate_fitted(fitted, data.part(part))
        rows += [{**row, "target": f"{row['target']} ({part})"} for row in part_rows]
    console.print(comparison_table(rows, title=f"{job.name} ({invocation()})"))


@app.command()
def tune(
    job_file: Annotated[Path, typer.Argument(help="Job file with a tune: section (jobs/tune_*.yaml).")],
    address: Annotated[str | None, typer.Option(
        help="Ray cluster to join (HOST:PORT, ray://HOST:PORT, auto); default: RAY_ADDRESS or local.")] = None,
    restart: Annotated[bool, typer.Option(
        help="Discard the search stored under tune.storage/<name> and start over.")] = False,
) -> None:
    """Search tune.space with ASHA on Ray Tune (resuming an interrupted search); write the best job file."""
    from hybridmat.config import load_job
    from hybridmat.distributed.tune import METRIC, SearchInterrupted, run_search, trial_table

    job = load_job(job_file)
    command = invocation()
    try:
        result = run_search(job, address=address, restart=restart, command=command, log=console.print)
    except SearchInterrupted as error:
        console.print(str(error))
        raise typer.Exit(130) from None
    console.print(trial_table(result.trials, list(job.tune.space), f"{job.name}: {METRIC} per trial ({command})"))
    console.print(f"best trial {result.best.trial_id}: {METRIC} {result.best.best_val_mae:.4f}; "
                  f"best job -> {result.best_job}")


@app.command()
def export(
    job_files: Annotated[list[Path], typer.Argument(help="Trained jobs whose members make the ensemble (same data, "
                                                    "split, targets and featurizer settings).")],
    dest: Annotated[Path, typer.Option(help="Model directory (the shipped default is hybridmat/pretrained).")],
) -> None:
    """Copy trained members (<= 10 MB) into one ensemble with a model card measured on val and test."""
    from hybridmat.config import load_job
    from hybridmat.workflows.export import export_model

    copied = export_model([load_job(job_file) for job_file in job_files], dest)
    console.print(f"exported {len(copied)} members and MODEL_CARD.md to {dest}")


@app.command()
def report(
    results: Annotated[Path, typer.Argument(help="Benchmark JSON written by `hybridmat bench models --json`.")],
    out: Annotated[Path, typer.Option(help="Directory for comparison.png and table.md.")],
    target: Annotated[str, typer.Option(help="Target to plot.")] = "e_form",
) -> None:
    """Redraw the model-comparison figure and table from a benchmark JSON (measured numbers only)."""
    import json

    from hybridmat.atomic_io import atomic_write_bytes
    from hybridmat.workflows.comparison import comparison_figure, markdown_table

    rows = json.loads(results.read_text())["results"]
    out.mkdir(parents=True, exist_ok=True)
    comparison_figure(rows, out / "comparison.png", target)
    atomic_write_bytes(out / "table.md", (markdown_table(rows) + "\n").encode())
    console.print(f"wrote {out / 'comparison.png'} and {out / 'table.md'} from {results}")


