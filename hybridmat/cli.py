"""The ``hybridmat`` command line: one entry point for every stage of the workflow."""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hybridmat.bench.multitask import bench_multitask_command
from hybridmat.bench.screening import bench_screening_command
from hybridmat.data.candidates import DEFAULT_PROTOTYPES, DEMO_ELEMENTS
from hybridmat.data.sources import open_source
from hybridmat.deploy.commands import logs_command, status_command, submit_command
from hybridmat.features.featurizer import FeaturizerSettings
from hybridmat.features.pipeline import DEFAULT_SHARD_SIZE, featurize_to_store
from hybridmat.ranking.command import rank_command
from hybridmat.summary import store_summary

app = typer.Typer(help="High-throughput screening of crystals with hybrid composition + graph models.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
bench_app = typer.Typer(help="Benchmarks: speed and accuracy tables, measured in this run.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
console = Console()



def invocation() -> str:
    """The command line as typed, for tables that say which command produced them."""
    return shlex.join(["hybridmat", *sys.argv[1:]])


@app.command()
def candidates(
    out: Annotated[Path, typer.Option(help="Output table (.parquet or .jsonl).")],
    elements: Annotated[str, typer.Option(help="Comma-separated element symbols to substitute.")] = ",".join(DEMO_ELEMENTS),
    prototypes: Annotated[str, typer.Option(help="Comma-separated prototype names or AFLOW labels.")] = ",".join(DEFAULT_PROTOTYPES),
    n: Annotated[int | None, typer.Option("-n", help="Number of candidates (seeded sample); all if omitted.")] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    charge_balanced: Annotated[bool, typer.Option(help="Keep only charge-balanced compositions.")] = True,
) -> None:
    """Generate candidate structures by element substitution into prototypes."""
    from hybridmat.data.candidates import generate_candidates
    from hybridmat.data.writers import write_structure_table

    started = time.perf_counter()
    records = generate_candidates(
        elements.split(","), prototypes.split(","), n=n, seed=seed, charge_balanced=charge_balanced
    )
    written = write_structure_table(records, out)
    console.print(f"wrote {written} candidates to {out} in {time.perf_counter() - started:.1f} s")


@app.command()
def featurize(
    source: Annotated[str, typer.Argument(help="Source string: DIR, FILE.parquet[?split=...], matbench:TASK, mp:..., candidates:...")],
    out: Annotated[Path, typer.Option(help="Feature store directory.")],
    composition: Annotated[str, typer.Option(help="Composition features: magpie (132) or ward2016 (145).")] = "ward2016",
    cutoff: Annotated[float, typer.Option(help="Neighbour cutoff radius in Å.")] = 8.0,
    max_neighbors: Annotated[int, typer.Option(help="Nearest neighbours kept per atom.")] = 12,
    shard_size: Annotated[int, typer.Option(help="Input rows per Parquet shard.")] = DEFAULT_SHARD_SIZE,
    allow_missing_targets: Annotated[bool, typer.Option(help="Keep rows with a missing target (stored as NaN).")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace a store made from another input or settings.")] = False,
    workers: Annotated[int | None, typer.Option(min=1, help="Ray actors featurizing shards in parallel (default: one process, no Ray).")] = None,
    address: Annotated[str | None, typer.Option(help="Ray cluster to join with --workers (default: RAY_ADDRESS, else a local Ray).")] = None,
) -> None:
    """Featurize a source into a Parquet feature store (resumable; bad rows go to errors.parquet)."""
    try:
        settings = FeaturizerSettings(composition=composition, cutoff=cutoff, max_neighbors=max_neighbors)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    started = time.perf_counter()
    options = dict(spec=source, settings=settings, shard_size=shard_size, require_targets=not allow_missing_targets,
                   overwrite=overwrite)
    if workers is None:
        manifest = featurize_to_store(open_source(source), out, **options)
    else:
        from hybridmat.distributed.featurize import featurize_with_ray
        from hybridmat.distributed.runtime import ray_session

        with ray_session(address):
            manifest = featurize_with_ray(open_source(source), out, workers=workers, **options)
    console.print(store_summary(out, manifest, time.perf_counter() - started))


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
    from hybridmat.report import comparison_table
    from hybridmat.workflow import run_train_job

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
    from hybridmat.experiment import evaluate as evaluate_fitted
    from hybridmat.report import comparison_table
    from hybridmat.workflow import job_split_data, load_fitted

    job = load_job(job_file)
    job.require("evaluate", "data", "model")
    if matbench:
        from hybridmat.matbench_eval import run_matbench

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
    from hybridmat.model_card import export_model

    copied = export_model(load_job(job_file), dest, f"hybridmat train {job_file}")
    console.print(f"exported {len(copied)} members and MODEL_CARD.md to {dest}")


@app.command()
def predict(
    source: Annotated[str, typer.Argument(help="Source string of the structures to predict.")],
    out: Annotated[Path, typer.Option(help="Predictions table (.parquet); errors go to <out>.errors.parquet.")],
    models: Annotated[list[Path] | None, typer.Option(help="Checkpoints of the ensemble (default: the shipped one).")] = None,
) -> None:
    """Predict per-target mean and std with an ensemble (default: the shipped pretrained ensemble)."""
    from hybridmat.predict import errors_path, predict_source, pretrained_checkpoints

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
    from hybridmat.predict import pretrained_checkpoints

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
    from hybridmat.report import comparison_figure, markdown_table

    rows = json.loads(results.read_text())["results"]
    out.mkdir(parents=True, exist_ok=True)
    comparison_figure(rows, out / "comparison.png", target)
    atomic_write_bytes(out / "table.md", (markdown_table(rows) + "\n").encode())
    console.print(f"wrote {out / 'comparison.png'} and {out / 'table.md'} from {results}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Directory for the demo's outputs.")] = Path("runs/demo"),
    n: Annotated[int, typer.Option("-n", help="Number of candidates.")] = 2000,
    seed: Annotated[int, typer.Option(help="Candidate sampling seed.")] = 0,
    hull_reference: Annotated[str | None, typer.Option(help="Known phases for E_hull (default: the training split of "
                                                            "the shared mp_cgcnn36k data when it is there).")] = None,
    address: Annotated[str | None, typer.Option(help="Ray cluster to join (default: RAY_ADDRESS, else a local Ray).")] = None,
) -> None:
    """The main job: generate candidates, screen them with the shipped ensemble on Ray, rank them."""
    started = time.perf_counter()
    candidates_file = out / "candidates.parquet"
    candidates(out=candidates_file, n=n, seed=seed)
    screen(source=str(candidates_file), out=out / "screen", models=None, shard_size=250, featurize_workers=None,
           inference_workers=None, address=address, overwrite=False, quiet=False)
    reference = hull_reference or _shared_hull_reference()
    if reference is None:
        console.print("no known phases found (../shared/data/mp_cgcnn36k): ranking by predicted e_form, no E_hull")
    ranking = dict(by="lcb:e_hull", pareto="e_hull:min,band_gap:max") if reference else \
        dict(by="lcb:e_form", pareto="e_form:min,band_gap:max")
    rank_command(out / "screen", out=out / "rank", where="band_gap between 1 and 3", top=25, kappa=1.0,
                 hull_reference=reference, **ranking)
    console.print(f"demo finished in {time.perf_counter() - started:.0f} s; open {out / 'rank' / 'report.html'}")


def _shared_hull_reference() -> str | None:
    """The shipped ensemble's training phases (mp_cgcnn36k ``full/train``) when the shared data is present."""
    from hybridmat.bench.data import SHARED_DATA

    table = SHARED_DATA / "mp_cgcnn36k" / "mp_cgcnn36k.parquet"
    return f"{table}?split=full/train" if table.exists() else None


@bench_app.command("featurize")
def bench_featurize(
    n: Annotated[int, typer.Option("--n", help="Number of real MP structures to time.")] = 2000,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the figures as JSON here.")] = None,
    data: Annotated[Path | None, typer.Option(help="mp_cgcnn36k.parquet (default: ../shared/data/...).")] = None,
) -> None:
    """Featurization speed vs matminer and pymatgen reference builders, measured in this run."""
    from hybridmat.bench.featurize import run_featurize_benchmark

    run_featurize_benchmark(n=n, json_path=json_path, data_path=data, console=console, command=invocation())


@bench_app.command("distributed")
def bench_distributed(
    n: Annotated[int, typer.Option("--n", help="Number of real MP structures to featurize.")] = 24000,
    shard_size: Annotated[int, typer.Option(help="Rows per shard (one actor call).")] = DEFAULT_SHARD_SIZE,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the figures as JSON here.")] = None,
    data: Annotated[Path | None, typer.Option(help="mp_cgcnn36k.parquet (default: ../shared/data/...).")] = None,
) -> None:
    """Featurization with 1 and 2 Ray workers vs the single-process path, measured in this run."""
    from hybridmat.bench.distributed import run_distributed_benchmark

    run_distributed_benchmark(n, shard_size, json_path, data, console, invocation())


@bench_app.command("screen")
def bench_screen(
    sizes: Annotated[str, typer.Option(help="Comma-separated numbers of generated candidates.")] = "10000,100000",
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the figures as JSON here.")] = None,
) -> None:
    """End-to-end screening candidates/s and peak memory (PSS) at several sizes: does memory stay flat?"""
    from hybridmat.bench.screen import run_screen_benchmark

    run_screen_benchmark([int(n) for n in sizes.split(",")], console, invocation(), json_path)


@bench_app.command("models")
def bench_models(
    split: Annotated[str, typer.Option(help="cpu_small (2 CPU cores, <= 45 min) or full (GPU).")] = "cpu_small",
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the results JSON here.")] = None,
    models: Annotated[str | None, typer.Option(help="Comma-separated subset of models (default: all).")] = None,
    data: Annotated[Path | None, typer.Option(help="mp_cgcnn36k.parquet (default: ../shared/data/...).")] = None,
    out: Annotated[Path, typer.Option(help="Directory for figures and results.")] = Path("runs/bench_models"),
) -> None:
    """Every model on the same real split: test MAE, R², training time; do hybrids beat their parents?"""
    from hybridmat.bench.models import MODEL_ORDER, run_models_benchmark

    chosen = tuple(models.split(",")) if models else MODEL_ORDER
    run_models_benchmark(split, device, json_path, console, invocation(), chosen, data, out)


@bench_app.command("training")
def bench_training(
    store: Annotated[Path, typer.Option(help="Feature store of real structures.")] = Path("runs/features/mp_cgcnn36k"),
    n: Annotated[int, typer.Option("--n", help="Structures per pass.")] = 2000,
    threads: Annotated[int, typer.Option(help="torch intra-op threads.")] = 2,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the figures as JSON here.")] = None,
) -> None:
    """CPU training throughput: PyG DataLoader (first epoch / cached) vs hybridmat's array collation."""
    from hybridmat.bench.training import run_training_benchmark

    run_training_benchmark(store, n, threads, console, invocation(), json_path)


@bench_app.command("gpu")
def bench_gpu(
    store: Annotated[Path, typer.Option(help="Feature store of real structures.")] = Path("runs/features/mp_cgcnn36k"),
    n: Annotated[int, typer.Option("--n", help="Structures to train on.")] = 4000,
    epochs: Annotated[int, typer.Option(help="Epochs per measurement (the first is excluded).")] = 3,
    device: Annotated[str, typer.Option(help="cuda (default) or cpu.")] = "cuda",
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the figures as JSON here.")] = None,
) -> None:
    """CGCNN, early fusion and ALIGNN train/inference structures/s on a GPU, fp32 vs AMP."""
    from hybridmat.bench.gpu import run_gpu_benchmark

    run_gpu_benchmark(store, n, epochs, device, console, invocation(), json_path)


app.command("rank")(rank_command)
app.command("submit")(submit_command)
app.command("status")(status_command)
app.command("logs")(logs_command)
bench_app.command("screening")(bench_screening_command)
bench_app.command("multitask")(bench_multitask_command)

def main() -> None:
    """The console script: user errors (a bad job file, source or address, a mismatched output
    directory, missing data) print one line and exit 2; ``HYBRIDMAT_DEBUG=1`` shows the traceback."""
    from hybridmat.config import JobFileError
    from hybridmat.data.matbench_source import DatasetUnavailableError
    from hybridmat.data.mp_source import MaterialsProjectError
    from hybridmat.distributed.runtime import RayUnreachableError
    from hybridmat.features.store import StoreMismatchError

    user_errors = (JobFileError, RayUnreachableError, StoreMismatchError, DatasetUnavailableError,
                   MaterialsProjectError, FileNotFoundError, ValueError)
    try:
        app()
    except user_errors as error:
        if os.environ.get("HYBRIDMAT_DEBUG"):
            raise
        Console(stderr=True).print(f"[red]error:[/red] {error}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
