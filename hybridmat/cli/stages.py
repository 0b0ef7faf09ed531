"""Screening-side commands: candidates, featurize, predict, screen, rank, the main job (demo), and deployment."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from hybridmat.cli.apps import app
from hybridmat.console import console
from hybridmat.data.candidates import DEFAULT_PROTOTYPES, DEMO_ELEMENTS
from hybridmat.data.source_strings import open_source
from hybridmat.deploy.commands import logs_command, status_command, submit_command
from hybridmat.features.featurizer import FeaturizerSettings
from hybridmat.features.pipeline import DEFAULT_SHARD_SIZE, featurize_to_store
from hybridmat.features.summary import store_summary
from hybridmat.ranking.command import rank_command

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
    from hybridmat.data.shared import MP_TABLE

    return f"{MP_TABLE}?split=full/train" if MP_TABLE.exists() else None


app.command("rank")(rank_command)
app.command("submit")(submit_command)
app.command("status")(status_command)
app.command("logs")(logs_command)
