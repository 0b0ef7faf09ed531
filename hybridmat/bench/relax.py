"""``hybridmat bench relax``: finding stable materials from *unrelaxed* structures (Matbench Discovery's IS2RE task,
built from our own data), and the relaxation stage's speed against relaxing by hand.

Two sets of unrelaxed inputs whose DFT formation energies the shipped ensemble never trained on:

- ``perturbed``: ``full/test`` structures (cells of at most ``max_sites`` sites), strained (a seeded random
  symmetric strain, each component within ±5 %) and rattled (Gaussian, σ = 0.1 Å on every Cartesian coordinate);
- ``prototypes``: candidates of ``hybridmat candidates`` (the demo elements, the default prototypes, the whole pool)
  whose reduced formula and space group (symprec 0.1) match a Materials Project entry of ``full/val`` or
  ``full/test``; the label is that entry's formation energy (the lowest when several match).

Every input is relaxed by the relaxation stage (:func:`~hybridmat.distributed.relax.relax_with_ray`) and its e_form
estimated four ways: (i) the ensemble on the unrelaxed input, (ii) the ensemble on the relaxed structure, (iii) the
potential's formation energy alone, (iv) (ii) and (iii) combined as the screening funnel combines them. E_hull is taken
against the hull of the ``full/train`` phases; stable ⇔ E_hull ≤ 0. An input whose relaxation failed counts as
predicted unstable in (ii)–(iv), as Matbench Discovery counts a failure. For the potential, the e_form error is also
shown with Materials Project's MP2020 corrections applied on top of its energies, which counts them twice for a
potential trained on corrected energies (:mod:`hybridmat.potentials.formation`).

Speed: the first ``speed_n`` perturbed structures are relaxed four times in the same run: by chgnet's
``StructOptimizer`` in this process, one structure after another, with torch's default threads (as a user would by
hand) and with one thread, and by the relaxation stage with 1 and with 2 Ray workers (one thread each). Each time
includes loading the model; the stage's also includes starting its actors (a process each, importing torch and chgnet),
while chgnet is already imported in this process when StructOptimizer's clock starts. Then the same structures are
evaluated once (energy, forces, stress) in calls of 1, 8 and 32 structures: whether batching would pay, on CPU here
and on CUDA where the machine has a GPU (``hybridmat bench relax`` is also the GPU measurement).
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from hybridmat.bench.data import default_mp_parquet

if TYPE_CHECKING:  # loaded when the benchmark runs
    from pymatgen.core import Structure

    from hybridmat.data.records import StructureRecord
    from hybridmat.potentials.relax import RelaxSettings
    from hybridmat.ranking.hull import HullReference

STRAIN = 0.05
RATTLE = 0.1
SYMPREC = 0.1
#: Perturbed structures are drawn from test cells of at most this many sites (54 % of them): a rattled 80-site
#: cell takes ~400 FIRE steps at ~0.5 s each on 2 cores. ``--max-sites 0`` draws from all.
MAX_SITES = 20
#: Structures per potential call compared by :func:`time_batched_calls`.
BATCH_SIZES = (1, 8, 32)
#: The four estimates: (i) ensemble on the unrelaxed input, (ii) relax → ensemble, (iii) the potential alone,
#: (iv) (ii) and (iii) combined.
METHODS = {"unrelaxed": "(i) unrelaxed", "relaxed": "(ii) relaxed", "potential": "(iii) potential",
           "combined": "(iv) combined"}


def perturb(structure: Structure, rng: np.random.Generator, strain: float = STRAIN,
            rattle: float = RATTLE) -> Structure:
    """``structure`` strained by a random symmetric strain (components uniform in ±``strain``) and rattled
    (Gaussian displacements, σ = ``rattle`` Å per Cartesian coordinate)."""
    from pymatgen.core import Lattice, Structure

    upper = np.triu(rng.uniform(-strain, strain, size=(3, 3)))
    epsilon = upper + np.triu(upper, 1).T
    lattice = Lattice(structure.lattice.matrix @ (np.eye(3) + epsilon))
    fractional = lattice.get_fractional_coords(
        structure.cart_coords @ (np.eye(3) + epsilon) + rng.normal(0.0, rattle, size=(len(structure), 3)))
    return Structure(lattice, structure.species, fractional)


def perturbed_test_set(data_path: Path, n: int, seed: int, max_sites: int | None = None) -> list[StructureRecord]:
    """``n`` seeded ``full/test`` structures of at most ``max_sites`` sites, perturbed (:func:`perturb`); the DFT
    e_form is the target."""
    from hybridmat.data.records import StructureRecord
    from hybridmat.data.source_strings import open_source

    test = [record for record in open_source(f"{data_path}?split=full/test")
            if max_sites is None or len(record.structure) <= max_sites]
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(test), size=min(n, len(test)), replace=False))
    return [StructureRecord(f"{test[i].id}-perturbed", perturb(test[i].structure, rng),
                            {"e_form": test[i].targets["e_form"]}, f"perturbed:{test[i].id}") for i in chosen]


def matching_prototypes(data_path: Path, n: int, seed: int) -> list[StructureRecord]:
    """Up to ``n`` seeded candidates whose reduced formula and space group match a ``full/val`` or ``full/test``
    entry, labelled with that entry's DFT e_form (the lowest of several)."""
    import pyarrow.parquet as pq
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from hybridmat.data.candidates import DEFAULT_PROTOTYPES, DEMO_ELEMENTS, generate_candidates
    from hybridmat.data.records import StructureRecord

    splits = json.loads((data_path.parent / "splits.json").read_text())
    held_out = set(splits["full"]["val"]) | set(splits["full"]["test"])
    rows = pq.read_table(data_path, columns=["id", "formula", "spacegroup_number", "e_form_eV_per_atom"]).to_pylist()
    label: dict[tuple[str, int], tuple[float, str]] = {}
    for row in rows:
        key = (row["formula"], row["spacegroup_number"])
        if row["id"] in held_out and (key not in label or row["e_form_eV_per_atom"] < label[key][0]):
            label[key] = (row["e_form_eV_per_atom"], row["id"])
    formulas = {formula for formula, _ in label}
    matched = []
    for record in generate_candidates(DEMO_ELEMENTS, DEFAULT_PROTOTYPES):
        if record.formula not in formulas:
            continue
        key = (record.formula, SpacegroupAnalyzer(record.structure, symprec=SYMPREC).get_space_group_number())
        if key in label:
            matched.append(StructureRecord(record.id, record.structure, {"e_form": label[key][0]},
                                           f"{record.provenance} ~ {label[key][1]}"))
    chosen = np.sort(np.random.default_rng(seed).choice(len(matched), size=min(n, len(matched)), replace=False))
    return [matched[i] for i in chosen]


def mp2020_on_top(structure: Structure, energy_per_atom: float, refs: dict[str, float]) -> float:
    """The formation energy with ``MaterialsProject2020Compatibility`` applied to the potential's energy (GGA+U
    where MP would have used U), i.e. the corrections counted a second time for an ``mp2020`` potential."""
    from pymatgen.entries.compatibility import MaterialsProject2020Compatibility
    from pymatgen.entries.computed_entries import ComputedStructureEntry

    from hybridmat.potentials.formation import formation_energy_per_atom

    compatibility = MaterialsProject2020Compatibility(check_potcar=False)
    elements = {element.symbol for element in structure.composition}
    hubbards = {el: u for anion, values in compatibility.u_settings.items() if anion in elements
                for el, u in values.items() if el in elements}
    entry = ComputedStructureEntry(structure, energy_per_atom * len(structure), parameters={
        "run_type": "GGA+U" if hubbards else "GGA", "hubbards": hubbards, "is_hubbard": bool(hubbards)})
    with contextlib.redirect_stderr(io.StringIO()):
        processed = compatibility.process_entry(entry, clean=True)
    if processed is None:
        return float("nan")
    return formation_energy_per_atom(structure.composition, processed.energy, refs)


def _by_id(ids: list[str], values: list[float], wanted: list[str]) -> np.ndarray:
    lookup = dict(zip(ids, values, strict=True))
    return np.array([lookup.get(i, np.nan) for i in wanted], dtype=np.float64)


def evaluate_set(name: str, records: list[StructureRecord], out: Path, hull: HullReference, workers: int,
                 potential: str, settings: RelaxSettings) -> dict[str, Any]:
    """Relax ``records`` on Ray, estimate their e_form the four ways of the module docstring and score each."""
    import pyarrow.parquet as pq
    from pymatgen.core import Structure

    from hybridmat.data.source_strings import open_source
    from hybridmat.data.writers import write_structure_table
    from hybridmat.distributed.relax import RelaxedSource, read_relaxed, relax_with_ray
    from hybridmat.potentials.base import potential_class
    from hybridmat.potentials.formation import load_elemental_refs
    from hybridmat.ranking.metrics import discovery_metrics
    from hybridmat.workflows.funnel import combine_estimates
    from hybridmat.workflows.predict import predict_source, pretrained_checkpoints

    out.mkdir(parents=True, exist_ok=True)
    inputs = out / "inputs.parquet"
    write_structure_table(records, inputs)
    started = time.perf_counter()
    relax_with_ray(open_source(str(inputs)), out / "relaxed", spec=str(inputs), workers=workers, potential=potential,
                   settings=settings, overwrite=True, progress=False)
    relax_seconds = time.perf_counter() - started
    relaxed = read_relaxed(out / "relaxed")
    checkpoints = pretrained_checkpoints()
    predict_source(open_source(str(inputs)), checkpoints, out / "unrelaxed.parquet")
    predict_source(RelaxedSource(out / "relaxed"), checkpoints, out / "relaxed.parquet")

    ids = [record.id for record in records]
    truth = np.array([record.targets["e_form"] for record in records])
    estimates: dict[str, np.ndarray] = {}
    stds: dict[str, np.ndarray] = {}
    for method in ("unrelaxed", "relaxed"):
        table = pq.read_table(out / f"{method}.parquet", columns=["id", "e_form_mean", "e_form_std"])
        estimates[method] = _by_id(table.column("id").to_pylist(), table.column("e_form_mean").to_pylist(), ids)
        stds[method] = _by_id(table.column("id").to_pylist(), table.column("e_form_std").to_pylist(), ids)
    relaxed_ids = relaxed.column("id").to_pylist()
    estimates["potential"] = _by_id(relaxed_ids, relaxed.column("potential_e_form").to_pylist(), ids)
    potential_std = potential_class(potential).e_form_std
    estimates["combined"], _ = combine_estimates(estimates["relaxed"], stds["relaxed"], estimates["potential"],
                                                 np.full(len(ids), np.nan if potential_std is None else potential_std))
    # Where the potential failed there is no relaxed structure either, so (iv) is missing with (ii).
    estimates["combined"][~np.isfinite(estimates["relaxed"])] = np.nan

    hull_energy = hull.hull_energies([record.formula for record in records])
    steps, volume_change = relaxed.column("steps").to_numpy(), relaxed.column("volume_change").to_numpy()
    figures: dict[str, Any] = {
        "set": name, "inputs": len(records), "relaxed": relaxed.num_rows, "errors": len(records) - relaxed.num_rows,
        "converged": int(sum(relaxed.column("converged").to_pylist())),
        "median_steps": float(np.median(steps)) if len(steps) else float("nan"),
        "median_abs_volume_change": float(np.median(np.abs(volume_change))) if len(steps) else float("nan"),
        "relax_seconds": relax_seconds, "potential_e_form_std": potential_std, "methods": {},
    }
    for method, values in estimates.items():
        metrics = discovery_metrics(truth - hull_energy, values - hull_energy)
        signed = (values - truth)[np.isfinite(values)]
        metrics["e_form_mean_signed_error"] = float(signed.mean()) if len(signed) else float("nan")
        metrics["e_form_error_std"] = float(signed.std(ddof=1)) if len(signed) > 1 else float("nan")
        figures["methods"][method] = metrics
    if potential_class(potential).energy_scale == "mp2020" and relaxed.num_rows:
        refs = load_elemental_refs()
        twice = [mp2020_on_top(Structure.from_dict(json.loads(row["structure"])), row["energy_per_atom"], refs)
                 for row in relaxed.select(["structure", "energy_per_atom"]).to_pylist()]
        errors = np.array(twice) - _by_id(ids, list(truth), relaxed_ids)
        figures["mp2020_on_top_e_form_mae"] = float(np.nanmean(np.abs(errors)))
        figures["mp2020_on_top_mean_signed_error"] = float(np.nanmean(errors))
    return figures


def time_struct_optimizer(records: list[StructureRecord], settings: RelaxSettings,
                          threads: int | None = None) -> dict[str, float]:
    """Relax ``records`` one after another with chgnet's ``StructOptimizer`` in this process (FIRE, Fréchet cell
    filter, same ``fmax`` and step limit) with ``threads`` torch threads (None: torch's default, as a user gets it);
    seconds include loading the model."""
    import torch
    from chgnet.model import StructOptimizer

    warnings.filterwarnings("ignore", category=UserWarning, module=r"chgnet\.")
    default_threads = torch.get_num_threads()
    torch.set_num_threads(threads or default_threads)
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        optimizer = StructOptimizer()
    steps = relaxed = 0
    try:
        for record in records:
            try:
                result = optimizer.relax(record.structure, fmax=settings.fmax, steps=settings.max_steps,
                                         verbose=False)
            except Exception:  # noqa: BLE001 - a structure chgnet cannot relax is left out, as the stage does
                continue
            relaxed += 1
            steps += len(result["trajectory"].energies) - 2  # the observer also records the start and the end
    finally:
        torch.set_num_threads(default_threads)
    return {"relaxed": relaxed, "steps": steps, "seconds": time.perf_counter() - started,
            "threads": threads or default_threads}


def time_relax_stage(records: list[StructureRecord], workers: int, potential: str,
                     settings: RelaxSettings) -> dict[str, float]:
    """Relax ``records`` with the relaxation stage on ``workers`` Ray actors into a fresh directory; seconds include
    starting the actors and loading the model in each."""
    from hybridmat.data.source_strings import open_source
    from hybridmat.data.writers import write_structure_table
    from hybridmat.distributed.relax import read_relaxed, relax_with_ray

    with tempfile.TemporaryDirectory(prefix="hybridmat-bench-relax-") as scratch:
        inputs = Path(scratch) / "inputs.parquet"
        write_structure_table(records, inputs)
        started = time.perf_counter()
        relax_with_ray(open_source(str(inputs)), Path(scratch) / "relaxed", spec=str(inputs), workers=workers,
                       potential=potential, settings=settings, progress=False)
        seconds = time.perf_counter() - started
        table = read_relaxed(Path(scratch) / "relaxed")
    return {"relaxed": table.num_rows, "steps": int(sum(table.column("steps").to_pylist())), "seconds": seconds}


def time_batched_calls(records: list[StructureRecord], batch_sizes: tuple[int, ...] = BATCH_SIZES,
                       repeats: int = 3) -> dict[str, Any]:
    """Seconds for one CHGNet energy+forces+stress evaluation of every structure, as calls of each batch size
    (one torch thread on CPU; on CUDA when this machine has it): does evaluating several structures per call pay?"""
    import torch
    from chgnet.model import CHGNet

    device = "cuda" if torch.cuda.is_available() else "cpu"
    default_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            model = CHGNet.load(model_name="0.3.0", use_device=device, verbose=False)
        structures = [record.structure for record in records]
        model.predict_structure(structures, task="efs", batch_size=1)  # warm-up: first calls allocate
        seconds = {}
        for size in batch_sizes:
            started = time.perf_counter()
            for _ in range(repeats):
                model.predict_structure(structures, task="efs", batch_size=size)
            seconds[str(size)] = (time.perf_counter() - started) / repeats
    finally:
        torch.set_num_threads(default_threads)
    return {"device": device, "structures": len(structures), "seconds": seconds}


def discovery_table(figures: dict[str, Any], title: str) -> Table:
    """One row per estimate: E_hull MAE and mean signed error (bias, eV/atom), precision, recall, F1, DAF and the
    confusion counts."""
    table = Table(title=title)
    for column in ("estimate", "MAE", "bias", "prec.", "recall", "F1", "DAF", "TP/FP/FN/TN"):
        table.add_column(column, justify="left" if column == "estimate" else "right")
    for method, label in METHODS.items():
        m = figures["methods"][method]
        table.add_row(label, f"{m['mae']:.3f}", f"{m['e_form_mean_signed_error']:+.3f}", f"{m['precision']:.2f}",
                      f"{m['recall']:.2f}", f"{m['f1']:.2f}", f"{m['daf']:.2f}",
                      "/".join(str(m[k]) for k in ("tp", "fp", "fn", "tn")))
    return table


def speed_table(speed: dict[str, dict[str, float]], title: str) -> Table:
    """Relaxations/s and FIRE steps/s of each way, as a ratio to ``StructOptimizer`` in the same run."""
    table = Table(title=title)
    for column in ("how", "relaxed", "FIRE steps", "s", "relax/s", "steps/s", "× StructOpt."):
        table.add_column(column, justify="left" if column == "how" else "right")
    baseline = speed["struct_optimizer"]["relaxed"] / speed["struct_optimizer"]["seconds"]
    labels = {"struct_optimizer": f"StructOptimizer, {speed['struct_optimizer']['threads']} thr.",
              "struct_optimizer_1": "StructOptimizer, 1 thr.", "ray_1": "stage, 1 worker",
              "ray_2": "stage, 2 workers"}
    for how, label in labels.items():
        s = speed[how]
        rate = s["relaxed"] / s["seconds"]
        table.add_row(label, str(s["relaxed"]), str(s["steps"]), f"{s['seconds']:.1f}", f"{rate:.3f}",
                      f"{s['steps'] / s['seconds']:.1f}", f"{rate / baseline:.2f}×")
    return table


def run_relax_benchmark(console: Console, command: str, n: int = 40, speed_n: int = 24, workers: int = 2,
                        seed: int = 0, max_sites: int | None = MAX_SITES, potential: str = "chgnet",
                        data_path: Path | None = None,
                        out: Path = Path("runs/bench_relax"), json_path: Path | None = None) -> dict[str, Any]:
    """Both sets scored the four ways and the speed comparison; prints the tables, optionally writes JSON."""
    from hybridmat.distributed.runtime import ray_session
    from hybridmat.potentials.base import potential_class
    from hybridmat.potentials.relax import RelaxSettings
    from hybridmat.ranking.hull import read_hull_reference
    from hybridmat.workflows.fitting import write_json

    data_path = Path(data_path or default_mp_parquet())
    potential_class(potential)
    settings = RelaxSettings()
    sets = {"perturbed": perturbed_test_set(data_path, n, seed, max_sites),
            "prototypes": matching_prototypes(data_path, n, seed)}
    hull = read_hull_reference(f"{data_path}?split=full/train")
    figures: dict[str, Any] = {"command": command, "data": str(data_path), "potential": potential, "n": n,
                               "max_sites": max_sites, "seed": seed, "workers": workers,
                               "settings": settings.as_dict(), "sets": {}}
    console.print(f"`{command}`")
    with ray_session(None):
        for name, records in sets.items():
            result = evaluate_set(name, records, Path(out) / name, hull, workers, potential, settings)
            figures["sets"][name] = result
            title = (f"{name}: {result['inputs']} inputs, {result['relaxed']} relaxed ({result['converged']} "
                     f"converged, median {result['median_steps']:.0f} steps), {result['errors']} errors; "
                     "stable ⇔ E_hull ≤ 0 vs full/train")
            console.print(discovery_table(result, title))
            if "mp2020_on_top_e_form_mae" in result:
                console.print(f"{potential} e_form vs DFT: MAE {result['methods']['potential']['mae']:.3f}, "
                              f"mean signed {result['methods']['potential']['e_form_mean_signed_error']:+.3f}, "
                              f"std {result['methods']['potential']['e_form_error_std']:.3f} eV/atom with MP's "
                              f"references subtracted directly; MAE {result['mp2020_on_top_e_form_mae']:.3f} "
                              f"(mean signed {result['mp2020_on_top_mean_signed_error']:+.3f}) with MP2020 "
                              "corrections applied on top")
        if speed_n and potential == "chgnet":
            import chgnet.model  # noqa: F401 - imported before the clock starts: StructOptimizer's times exclude it

            timed = sets["perturbed"][:speed_n]
            speed = {"struct_optimizer": time_struct_optimizer(timed, settings),
                     "struct_optimizer_1": time_struct_optimizer(timed, settings, threads=1)}
            for count in (1, 2):
                speed[f"ray_{count}"] = time_relax_stage(timed, count, potential, settings)
            figures["speed"] = speed
            console.print(speed_table(speed, f"relaxing the first {len(timed)} perturbed structures"))
            batched = time_batched_calls(timed)
            figures["batched_calls"] = batched
            one = batched["seconds"]["1"]
            console.print(f"CHGNet energy+forces+stress of those {batched['structures']} structures on "
                          f"{batched['device']}: " + ", ".join(
                              f"batch {size}: {seconds:.2f} s ({one / seconds:.2f}x)"
                              for size, seconds in batched["seconds"].items()))
    if json_path:
        write_json(json_path, figures)
    return figures


def bench_relax_command(
    n: Annotated[int, typer.Option("--n", min=1, help="Structures per set (perturbed, prototypes).")] = 40,
    speed_n: Annotated[int, typer.Option(min=0, help="Structures in the speed comparison (0 skips it).")] = 24,
    workers: Annotated[int, typer.Option(min=1, help="Ray workers relaxing the sets.")] = 2,
    seed: Annotated[int, typer.Option(help="Seed of the samples and perturbations.")] = 0,
    max_sites: Annotated[int, typer.Option(min=0, help="Perturbed structures from test cells of at most this many "
                                                       "sites (0: all).")] = MAX_SITES,
    potential: Annotated[str, typer.Option(help="Universal potential.")] = "chgnet",
    data: Annotated[Path | None, typer.Option(help="mp_cgcnn36k.parquet (default: ../shared/data/...).")] = None,
    out: Annotated[Path, typer.Option(help="Directory for inputs, relaxed stores, predictions.")] = Path(
        "runs/bench_relax"),
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the figures as JSON here.")] = None,
) -> None:
    """Stability discovery from unrelaxed inputs (ensemble / relax → ensemble / potential / combined) and speed."""
    from hybridmat.console import console, invocation

    run_relax_benchmark(console, invocation(), n, speed_n, workers, seed, max_sites or None, potential, data, out,
                        json_path)
