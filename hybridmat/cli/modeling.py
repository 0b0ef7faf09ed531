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
    address: Annotated[str | None, typer.Option(help="Ray cluster for --ray (default: RAY_ADDRESS, else a local Ray).")] = None,
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
        result = run_train_job(job, progress=not quiet, log=None if quiet else console.log, runner=runner)
    console.print(comparison_table(result.rows, title=f"{job.name}: test split ({invocation()})"))
    console.print(f"artefacts in {result.output}")


@app.command()
def evaluate(
    job_file: Annotated[Path, typer.Argument(help="Job file whose model to evaluate.")],
    matbench: Annotated[str | None, typer.Option(help="Run the Matbench protocol on this task instead (trains per fold).")] = None,
    folds: Annotated[str | None, typer.Option(help="Comma-separated Matbench folds (default: all five).")] = None,
    out: Annotated[Path | None, typer.Option(help="Matbench results file (default: <job output>/matbench_<task>.json).")] = None,
) -> None:
    """Held-out MAE/RMSE/R² of a trained job on its test split, or the Matbench fold protocol with task.record."""
    from hybridmat.config import load_job
    from hybridmat.workflows.fitting import evaluate as evaluate_fitted
    from hybridmat.workflows.comparison import comparison_table
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
    data = job_split_data(job)
    rows = []
    for part in ("val", "test"):
        part_rows, _, _ = evaluate_fitted(load_fitted(job.model.name, Path(job.output)), data.part(part))
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
    job_file: Annotated[Path, typer.Argument(help="The trained job whose ensemble to export.")],
    dest: Annotated[Path, typer.Option(help="Model directory (the shipped default is hybridmat/pretrained).")],
) -> None:
    """Copy a trained ensemble (<= 10 MB) into a model directory with a model card from its metrics."""
    from hybridmat.config import load_job
    from hybridmat.workflows.export import export_model

    copied = export_model(load_job(job_file), dest, f"hybridmat train {job_file}")
    console.print(f"exported {len(copied)} members and MODEL_CARD.md to {dest}")


@app.command()
def predict(
    source: Annotated[str, typer.Argument(help="Source string of the structures to predict.")],
    out: Annotated[Path, typer.Option(help="Predictions table (.parquet); errors go to <out>.errors.parquet.")],
    models: Annotated[list[Path] | None, typer.Option(help="Checkpoints of the ensemble (default: the shipped one).")] = None,
) -> None:
    """Predict per-target mean and std with an ensemble (default: the shipped pretrained ensemble)."""
    from hybridmat.workflows.predict import errors_path, predict_source, pretrained_checkpoints

    started = time.perf_counter()
    counts = predict_source(open_source(source), models or pretrained_checkpoints(), out)
    console.print(f"{counts['predicted']:,} predictions -> {out}; {counts['errors']:,} errors -> {errors_path(out)} "
                  f"({counts['inputs']:,} inputs, {time.perf_counter() - started:.1f} s)")


@app.command()
def screen(
    source: Annotated[str, typer.Argument(help="A job file with a `screen:` section (JOB.yaml), or a source string.")],
    out: Annotated[Path | None, typer.Option(help="Predictions directory (default: the job's screen.out, else runs/screen).")] = None,
    models: Annotated[list[Path] | None, typer.Option(help="Ensemble checkpoints (default: the job's, else the shipped ensemble).")] = None,
    shard_size: Annotated[int | None, typer.Option(min=1, help="Input rows per prediction shard.")] = None,
    featurize_workers: Annotated[int | None, typer.Option(min=1, help="Featurization actors (default: CPUs minus inference actors).")] = None,
    inference_workers: Annotated[int | None, typer.Option(min=1, help="Inference actors, each holding the ensemble.")] = None,
    address: Annotated[str | None, typer.Option(help="Ray cluster to join (default: RAY_ADDRESS, else a local Ray).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a predictions directory made from another input or model.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Stream candidates through featurization and inference actors into Parquet shards (resumable)."""
    from hybridmat.config import ScreenSection, load_job
    from hybridmat.distributed.runtime import ray_session
    from hybridmat.distributed.screen import screen_with_ray
    from hybridmat.workflows.predict import pretrained_checkpoints

    if source.endswith((".yaml", ".yml")):
        job = load_job(source)
        job.require("screen", "screen")
        section = job.screen
    else:
        section = ScreenSection(source=source)
    overrides = {"out": out and str(out), "models": models and [str(m) for m in models], "shard_size": shard_size,
                 "featurize_workers": featurize_workers, "inference_workers": inference_workers}
    section = section.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    checkpoints = [Path(m) for m in section.models] if section.models else pretrained_checkpoints()
    candidates_source = open_source(section.source)  # a bad source fails before Ray starts
    started = time.perf_counter()
    with ray_session(address):
        manifest = screen_with_ray(
            candidates_source, checkpoints, Path(section.out), spec=section.source,
            shard_size=section.shard_size, featurize_workers=section.featurize_workers,
            inference_workers=section.inference_workers, overwrite=overwrite, progress=not quiet,
        )
    counts, seconds = manifest["counts"], time.perf_counter() - started
    console.print(f"{counts['rows']:,} predictions in {counts['shards']} shards -> {section.out}/shards; "
                  f"{counts['errors']:,} errors -> {section.out}/errors.parquet "
                  f"({counts['inputs']:,} inputs, {seconds:.1f} s, {counts['inputs'] / seconds:,.0f} inputs/s)")


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


