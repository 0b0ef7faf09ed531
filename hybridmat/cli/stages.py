"""Screening-side commands: candidates, featurize, predict, screen, rank, the main job (demo), and deployment."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from hybridmat.cli.apps import app
from hybridmat.config import RelaxSection
from hybridmat.console import console
from hybridmat.data.candidates import DEFAULT_PROTOTYPES, DEMO_ELEMENTS
from hybridmat.data.plausibility import IONIC_RULES
from hybridmat.data.source import Source
from hybridmat.data.source_strings import open_source
from hybridmat.deploy.commands import logs_command, status_command, submit_command
from hybridmat.features.featurizer import FeaturizerSettings
from hybridmat.features.graph import DEFAULT_CUTOFF, DEFAULT_MAX_NEIGHBORS
from hybridmat.features.pipeline import DEFAULT_SHARD_SIZE, featurize_to_store
from hybridmat.features.summary import store_summary
from hybridmat.ranking.command import rank_command


@app.command()
def candidates(
    out: Annotated[Path, typer.Option(help="Output table (.parquet or .jsonl); rejected rows go to "
                                           "<stem>.rejected.parquet beside it.")],
    elements: Annotated[str, typer.Option(help="Comma-separated element symbols to "
                                               "substitute.")] = ",".join(DEMO_ELEMENTS),
    prototypes: Annotated[str, typer.Option(help="Comma-separated prototype names or AFLOW "
                                                 "labels.")] = ",".join(DEFAULT_PROTOTYPES),
    n: Annotated[int | None, typer.Option("-n", help="Number of candidates generated (seeded sample) before the "
                                                     "plausibility filter; all if omitted.")] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    charge_balanced: Annotated[bool, typer.Option(help="Generate only charge-balanced compositions.")] = True,
    plausible: Annotated[bool, typer.Option("--filter/--no-filter", help="Keep only chemically plausible candidates "
                                            "(common oxidation states, Pauling test, radius rules).")] = True,
) -> None:
    """Generate candidate structures by element substitution into prototypes, then filter them for plausibility."""
    from hybridmat.data.candidates import generate_candidates
    from hybridmat.data.filtering import filter_records, rejected_path
    from hybridmat.data.writers import write_structure_table

    started = time.perf_counter()
    records = generate_candidates(
        elements.split(","), prototypes.split(","), n=n, seed=seed, charge_balanced=charge_balanced
    )
    if not plausible:
        written = write_structure_table(records, out)
        console.print(f"wrote {written:,} candidates to {out} in {time.perf_counter() - started:.1f} s")
        return
    counts = filter_records(records, out)
    console.print(f"{counts.inputs:,} candidates generated; plausibility filter {counts.summary()} -> {out}, "
                  f"rejected -> {rejected_path(out)} ({time.perf_counter() - started:.1f} s)")


@app.command("filter")
def filter_command(
    source: Annotated[str, typer.Argument(help="Source string of the structures to check.")],
    out: Annotated[Path, typer.Option(help="Table of the kept structures (.parquet or .jsonl); rejected rows go to "
                                           "<stem>.rejected.parquet beside it.")],
    rules: Annotated[str, typer.Option(help="Comma-separated rules to apply, in order.")] = ",".join(IONIC_RULES),
    min_state_share: Annotated[float, typer.Option(help="ICSD share that makes an oxidation state common.")] = 0.04,
) -> None:
    """Keep chemically plausible structures: common oxidation states, Pauling test, prototype radius rules."""
    from pydantic import ValidationError

    from hybridmat.data.filtering import filter_records, rejected_path
    from hybridmat.data.plausibility import PlausibilitySettings

    try:
        settings = PlausibilitySettings(rules=tuple(rules.split(",")), min_state_share=min_state_share)
    except ValidationError as error:
        raise typer.BadParameter(str(error).splitlines()[-2].strip()) from None
    started = time.perf_counter()
    counts = filter_records(open_source(source), out, settings)
    console.print(f"plausibility filter {counts.summary()} -> {out}, rejected -> {rejected_path(out)} "
                  f"({time.perf_counter() - started:.1f} s)")


@app.command()
def featurize(
    source: Annotated[str, typer.Argument(help="Source string: DIR, FILE.parquet[?split=...], matbench:TASK, mp:..., "
                                               "candidates:...")],
    out: Annotated[Path, typer.Option(help="Feature store directory.")],
    composition: Annotated[str, typer.Option(help="Composition features: magpie (132) or ward2016 "
                                                  "(145).")] = "ward2016",
    cutoff: Annotated[float, typer.Option(help="Neighbour cutoff radius in Å.")] = DEFAULT_CUTOFF,
    max_neighbors: Annotated[int, typer.Option(help="Nearest neighbours kept per atom.")] = DEFAULT_MAX_NEIGHBORS,
    edge_basis_stop: Annotated[float | None, typer.Option(help="Last centre of the Gaussian bond-length basis in Å "
                                                               "(default: the cutoff).")] = None,
    shard_size: Annotated[int, typer.Option(min=1, help="Input rows per Parquet shard.")] = DEFAULT_SHARD_SIZE,
    allow_missing_targets: Annotated[bool, typer.Option(help="Keep rows with a missing target (stored as "
                                                             "NaN).")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace a store made from another input or settings.")] = False,
    workers: Annotated[int | None, typer.Option(min=1, help="Ray actors featurizing shards in parallel (default: one "
                                                            "process, no Ray).")] = None,
    address: Annotated[str | None, typer.Option(help="Ray cluster to join with --workers (default: RAY_ADDRESS, else a "
                                                     "local Ray).")] = None,
) -> None:
    """Featurize a source into a Parquet feature store (resumable; bad rows go to errors.parquet)."""
    try:
        settings = FeaturizerSettings(composition=composition, cutoff=cutoff, max_neighbors=max_neighbors,
                                      edge_basis_stop=edge_basis_stop)
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
        from hybridmat.locking import directory_lock

        with directory_lock(out, "featurize"), ray_session(address):
            manifest = featurize_with_ray(open_source(source), out, workers=workers, **options)
    console.print(store_summary(out, manifest, time.perf_counter() - started))


@app.command()
def predict(
    source: Annotated[str, typer.Argument(help="Source string of the structures to predict.")],
    out: Annotated[Path, typer.Option(help="Predictions table (.parquet); errors go to <out>.errors.parquet.")],
    models: Annotated[list[Path] | None, typer.Option(help="A model directory or the ensemble's checkpoints "
                                                             "(default: the shipped one).")] = None,
) -> None:
    """Predict per-target mean, calibrated std and 90 % interval, and the domain flag, with an ensemble."""
    from hybridmat.workflows.predict import errors_path, model_files, predict_source

    started = time.perf_counter()
    files = model_files(models or None)
    if files.stale:
        console.print(f"warning: {files.stale}")
    counts = predict_source(open_source(source), files, out)
    console.print(f"{counts['predicted']:,} predictions -> {out}; {counts['errors']:,} errors -> {errors_path(out)} "
                  f"({counts['inputs']:,} inputs, {time.perf_counter() - started:.1f} s)")


@app.command()
def calibrate(
    model_dir: Annotated[Path, typer.Argument(help="Model directory (member-k.pt) or a training job's output "
                                                   "(member-k/best.pt).")],
    data: Annotated[Path | None, typer.Option(help="The table the ensemble was trained on, with splits.json beside "
                                                   "it (default: ../shared/data/mp_cgcnn36k).")] = None,
    split: Annotated[str, typer.Option(help="Split of splits.json: domain from NAME/train, calibration on "
                                            "NAME/val.")] = "full",
) -> None:
    """Fit the ensemble's calibrated intervals and domain model (on validation data); store them beside it."""
    from hybridmat.console import invocation
    from hybridmat.data.shared import MP_TABLE
    from hybridmat.workflows.calibrate import calibrate_model

    started = time.perf_counter()
    record = calibrate_model(model_dir, data or MP_TABLE, split, command=invocation())
    for target, figures in record["validation"].items():
        console.print(f"{target}: {figures['rows']:,} val rows; raw ±1 std covers {figures['raw_1std']:.1%}, "
                      f"calibrated 68 % / 90 % intervals {figures['calibrated_68']:.1%} / "
                      f"{figures['calibrated_90']:.1%}")
    console.print(f"domain threshold {record['domain']['threshold']:.3f}; calibration.json and domain.npz -> "
                  f"{model_dir} ({time.perf_counter() - started:.0f} s)")


@app.command()
def screen(
    source: Annotated[str, typer.Argument(help="A job file with a `screen:` section (JOB.yaml), or a source string.")],
    out: Annotated[Path | None, typer.Option(help="Predictions directory (default: the job's screen.out, else "
                                                  "runs/screen).")] = None,
    models: Annotated[list[Path] | None, typer.Option(help="Ensemble checkpoints (default: the job's, else the shipped "
                                                           "ensemble).")] = None,
    shard_size: Annotated[int | None, typer.Option(min=1, help="Input rows per prediction shard.")] = None,
    featurize_workers: Annotated[int | None, typer.Option(min=1, help="Featurization actors (default: CPUs minus "
                                                                      "inference actors).")] = None,
    inference_workers: Annotated[int | None, typer.Option(min=1, help="Inference actors, each holding the "
                                                                      "ensemble.")] = None,
    address: Annotated[str | None, typer.Option(help="Ray cluster to join (default: RAY_ADDRESS, else a local "
                                                     "Ray).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a predictions directory made from another input or "
                                                 "model.")] = False,
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
    if section.filter is not None:
        from hybridmat.data.plausibility import FilteredSource

        candidates_source = FilteredSource(candidates_source, section.filter)
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
    if section.filter is not None:
        from hybridmat.data.filtering import write_screen_rejected

        rejected = write_screen_rejected(Path(section.out) / "errors.parquet", Path(section.out) / "rejected.parquet")
        console.print(f"{rejected:,} of the errors are candidates the plausibility filter rejected -> "
                      f"{section.out}/rejected.parquet")
    if section.relax is not None:
        run_screen_funnel(candidates_source, Path(section.out), checkpoints, section.relax, address, quiet)


def run_screen_funnel(source: Source, stage1: Path, checkpoints: list[Path], section: RelaxSection,
                      address: str | None, quiet: bool) -> Path:
    """Stages 2 and 3 of a screen (relax the shortlist, re-score it); the final table's path."""
    from hybridmat.distributed.runtime import ray_session
    from hybridmat.workflows.funnel import funnel_dir, run_funnel

    started = time.perf_counter()
    with ray_session(address):
        counts = run_funnel(source, stage1, checkpoints, section, progress=not quiet)
    final = funnel_dir(stage1) / "predictions.parquet"
    console.print(f"funnel ({section.potential}, {section.by}): {counts.summary()} -> {final}; errors -> "
                  f"{funnel_dir(stage1) / 'errors.parquet'} ({time.perf_counter() - started:.0f} s)")
    return final


@app.command()
def relax(
    source: Annotated[str, typer.Argument(help="Source string of the structures to relax.")],
    out: Annotated[Path, typer.Option(help="Relaxed-structure directory (Parquet shards + errors + manifest).")],
    potential: Annotated[str, typer.Option(help="Universal potential: chgnet (weights in its wheel) or "
                                                "emt.")] = "chgnet",
    fmax: Annotated[float, typer.Option(help="Converged when every force is below this (eV/Å).")] = 0.05,
    max_steps: Annotated[int, typer.Option(min=1, help="FIRE steps before giving up (converged = false).")] = 500,
    time_limit: Annotated[float, typer.Option(min=1.0, help="Seconds per structure before it is an error.")] = 600.0,
    shard_size: Annotated[int | None, typer.Option(min=1, help="Structures per shard (default: 8, fewer for a "
                                                               "small input so every worker stays busy).")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Ray actors relaxing shards in parallel (default: one "
                                                            "process, no Ray).")] = None,
    address: Annotated[str | None, typer.Option(help="Ray cluster to join with --workers (default: RAY_ADDRESS, else a "
                                                     "local Ray).")] = None,
    extxyz: Annotated[Path | None, typer.Option(help="Also write the relaxed structures to this extended-XYZ "
                                                     "file.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a directory made from another input, potential or "
                                                 "settings.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Relax structures with a universal potential (ASE FIRE + Fréchet cell filter); resumable."""
    from hybridmat.distributed.relax import (
        read_relaxed,
        relax_to_store,
        relax_with_ray,
        write_extxyz,
    )
    from hybridmat.potentials.base import potential_class
    from hybridmat.potentials.relax import RelaxSettings

    try:
        potential_class(potential)  # an unknown name fails before anything starts
        settings = RelaxSettings(fmax=fmax, max_steps=max_steps, time_limit_s=time_limit)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    structures = open_source(source)
    options = dict(spec=source, potential=potential, settings=settings, overwrite=overwrite, progress=not quiet,
                   shard_size=shard_size)
    started = time.perf_counter()
    if workers is None:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as each Ray worker: a second thread slows CHGNet on small cells (bench relax)
        try:
            manifest = relax_to_store(structures, out, **options)
        finally:
            torch.set_num_threads(threads)
    else:
        from hybridmat.distributed.runtime import ray_session

        with ray_session(address):
            manifest = relax_with_ray(structures, out, workers=workers, **options)
    counts, seconds = manifest["counts"], time.perf_counter() - started
    table = read_relaxed(out)
    converged = sum(table.column("converged").to_pylist())
    console.print(f"{counts['rows']:,} relaxed ({converged:,} converged) -> {out}/shards; {counts['errors']:,} errors "
                  f"-> {out}/errors.parquet ({counts['inputs']:,} inputs, {seconds:.1f} s)")
    if extxyz is not None:
        console.print(f"wrote {write_extxyz(table, extxyz):,} structures to {extxyz}")


#: The demo's band-gap window (eV): semiconductors for optoelectronics.
DEMO_WINDOW = "band_gap between 1 and 3"


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Directory for the demo's outputs.")] = Path("runs/demo"),
    n: Annotated[
        int, typer.Option("-n", help="Number of candidates generated (before the plausibility filter).")
    ] = 2000,
    seed: Annotated[int, typer.Option(help="Candidate sampling seed.")] = 0,
    plausible: Annotated[bool, typer.Option("--filter/--no-filter", help="Screen only chemically plausible "
                                                                         "candidates.")] = True,
    hull_reference: Annotated[str | None, typer.Option(help="Known phases for E_hull (default: every phase of the "
                                                            "shared mp_cgcnn36k table when it is there).")] = None,
    relax_top: Annotated[int, typer.Option(min=0, help="Relax this many of the best with CHGNet and re-score them "
                                                       "(the funnel; 0 skips it).")] = 10,
    address: Annotated[str | None, typer.Option(help="Ray cluster to join (default: RAY_ADDRESS, else a local "
                                                     "Ray).")] = None,
) -> None:
    """The main job: generate candidates, keep the plausible ones, screen them with the shipped ensemble on Ray
    (calibrated intervals, domain flags), rank them against the hull of every known phase, relax the best with
    CHGNet, re-score and rank them again."""
    started = time.perf_counter()
    candidates_file = out / "candidates.parquet"
    candidates(out=candidates_file, n=n, seed=seed, plausible=plausible)
    screen(source=str(candidates_file), out=out / "screen", models=None, shard_size=None, featurize_workers=None,
           inference_workers=None, address=address, overwrite=False, quiet=False)
    reference = hull_reference or _shared_hull_reference()
    if reference is None:
        console.print("no known phases found (../shared/data/mp_cgcnn36k): ranking by predicted e_form, no E_hull")
    ranking = dict(by="lcb:e_hull", pareto="e_hull:min,band_gap:max") if reference else \
        dict(by="lcb:e_form", pareto="e_form:min,band_gap:max")
    rank_command(out / "screen", out=out / "rank", where=DEMO_WINDOW, top=25, kappa=1.0,
                 hull_reference=reference, **ranking)
    if relax_top:
        _demo_funnel(out, relax_top, ranking["by"], reference, address)
    console.print(f"demo finished in {time.perf_counter() - started:.0f} s; open {out / 'rank' / 'report.html'}")


def _demo_funnel(out: Path, top_k: int, by: str, reference: str | None, address: str | None) -> None:
    """Relax the demo's best ``top_k`` with CHGNet, re-score, rank again and show what changed."""
    import os

    from hybridmat.ranking.command import rank
    from hybridmat.ranking.report import funnel_table
    from hybridmat.workflows.predict import pretrained_checkpoints

    section = RelaxSection(top_k=top_k, by=by, where=DEMO_WINDOW, hull_reference=reference,
                           workers=min(2, os.cpu_count() or 1))
    final = run_screen_funnel(open_source(str(out / "candidates.parquet")), out / "screen", pretrained_checkpoints(),
                              section, address, quiet=False)
    everything, _ = rank(final, None, by=by, hull_reference=reference, include_out_of_domain=True)
    title = f"what relaxing the top {everything.num_rows} changed (ranked by {by} after relaxation)"
    console.print(funnel_table(everything, title))
    rank_command(final, out=out / "rank_relaxed", where=DEMO_WINDOW, top=top_k, kappa=1.0, hull_reference=reference,
                 by=by, pareto=None)


def _shared_hull_reference() -> str | None:
    """Every known phase of mp_cgcnn36k (all 36,738 rows, not only a training split) when the shared data is present."""
    from hybridmat.data.shared import MP_TABLE

    return str(MP_TABLE) if MP_TABLE.exists() else None


app.command("rank")(rank_command)
app.command("submit")(submit_command)
app.command("status")(status_command)
app.command("logs")(logs_command)
