"""``hybridmat bench screening``: does the shipped ensemble find the stable materials it never saw?

The pretrained ensemble (trained on ``full/train`` of mp_cgcnn36k) predicts e_form for ``full/test``.
The hull of known phases is built from the ``full/train`` DFT formation energies (elements at 0 eV/atom).
Each test material gets a true E_hull (its DFT e_form against that hull) and a predicted one (the
ensemble's e_form against the same hull); stable means E_hull <= threshold, and the metrics are Matbench
Discovery's (a structure that could not be predicted counts as "predicted unstable"). With one fixed
hull, E_hull errors equal e_form errors, so the E_hull MAE is the ensemble's e_form MAE on these rows.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import typer
from rich.console import Console
from rich.table import Table

from hybridmat.bench.data import default_mp_parquet

if TYPE_CHECKING:  # the command is registered in cli.py: torch, pymatgen and duckdb load when it runs
    from hybridmat.ranking.hull import HullReference

TRUE_E_FORM = "e_form_eV_per_atom"


def results_table(figures: dict[str, Any], title: str) -> Table:
    """Counts and discovery metrics, one per row."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("test materials (predicted / errors)",
                  f"{figures['n']:,} ({figures['predicted']:,} / {figures['errors']:,})")
    table.add_row("stable: E_hull <=", f"{figures['threshold']:g} eV/atom")
    table.add_row("TP / FP / TN / FN", " / ".join(f"{figures[k]:,}" for k in ("tp", "fp", "tn", "fn")))
    ceiling = 1 / figures["prevalence"] if figures["prevalence"] > 0 else float("nan")
    for key, label in (("prevalence", "prevalence"), ("precision", "precision"), ("recall", "recall"),
                       ("f1", "F1"), ("accuracy", "accuracy"), ("daf", f"DAF (at most 1/prevalence = {ceiling:.2f})")):
        table.add_row(label, f"{figures[key]:.3f}")
    table.add_row("E_hull MAE", f"{figures['mae']:.4f} eV/atom")
    table.add_row("E_hull RMSE", f"{figures['rmse']:.4f} eV/atom")
    return table


def held_out_e_hull(data_path: Path, predictions: Path, hull: HullReference) -> tuple[np.ndarray, np.ndarray]:
    """True (DFT) and predicted E_hull of every test input (a NaN prediction where the input failed)."""
    from hybridmat.workflows.predict import errors_path

    predicted = pq.read_table(predictions, columns=["id", "e_form_mean"])
    failed = pq.read_table(errors_path(predictions), columns=["id"])
    inputs = pa.concat_arrays([predicted.column("id").combine_chunks(), failed.column("id").combine_chunks()])
    truth = pq.read_table(data_path, columns=["id", "formula", TRUE_E_FORM])
    truth = truth.filter(pc.is_in(truth.column("id"), value_set=inputs))
    by_id = dict(zip(predicted.column("id").to_pylist(), predicted.column("e_form_mean").to_pylist(), strict=True))
    e_pred = np.array([by_id.get(i, np.nan) for i in truth.column("id").to_pylist()], dtype=np.float64)
    hull_energy = hull.hull_energies(truth.column("formula").to_pylist())
    return truth.column(TRUE_E_FORM).to_numpy() - hull_energy, e_pred - hull_energy


def run_screening_benchmark(console: Console, command: str, data_path: Path | None = None, split: str = "full",
                            limit: int | None = None, threshold: float = 0.0,
                            out: Path = Path("runs/bench_screening"), json_path: Path | None = None) -> dict[str, Any]:
    """Predict ``split``/test, compare true and predicted E_hull against the ``split``/train hull, print
    the table and optionally write the figures as JSON."""
    from hybridmat.data.source_strings import open_source
    from hybridmat.ranking.hull import read_hull_reference
    from hybridmat.ranking.metrics import discovery_metrics
    from hybridmat.workflows.fitting import write_json
    from hybridmat.workflows.predict import model_id, predict_source, pretrained_checkpoints

    data_path = Path(data_path or default_mp_parquet())
    source = f"{data_path}?split={split}/test" + (f"&limit={limit}" if limit else "")
    predictions = Path(out) / "predictions.parquet"
    started = time.perf_counter()
    counts = predict_source(open_source(source), pretrained_checkpoints(), predictions)
    predict_seconds = time.perf_counter() - started
    started = time.perf_counter()
    hull = read_hull_reference(f"{data_path}?split={split}/train")
    e_hull_true, e_hull_pred = held_out_e_hull(data_path, predictions, hull)
    hull_seconds = time.perf_counter() - started

    figures = {"command": command, "data": str(data_path), "source": source,
               "hull": f"{split}/train ({len(hull):,} phases)", "model_id": model_id(pretrained_checkpoints()),
               "threshold": threshold, "predicted": counts["predicted"], "errors": counts["errors"],
               **discovery_metrics(e_hull_true, e_hull_pred, threshold),
               "predict_seconds": predict_seconds, "hull_seconds": hull_seconds}
    title = f"screening quality, pretrained ensemble on {split}/test, hull from {split}/train (`{command}`)"
    console.print(results_table(figures, title))
    console.print(f"prediction {predict_seconds:.0f} s, hulls {hull_seconds:.0f} s; predictions in {predictions}")
    if json_path:
        write_json(json_path, figures)
    return figures


def bench_screening_command(
    split: Annotated[str, typer.Option(help="Split of splits.json: predict NAME/test, hull from NAME/train.")] = "full",
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N test structures (a quick check).")] = None,
    threshold: Annotated[float, typer.Option(help="Stable when E_hull <= this (eV/atom).")] = 0.0,
    data: Annotated[Path | None, typer.Option(help="mp_cgcnn36k.parquet (default: ../shared/data/...).")] = None,
    out: Annotated[Path, typer.Option(help="Directory for the test predictions.")] = Path("runs/bench_screening"),
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the figures as JSON here.")] = None,
) -> None:
    """Stability-discovery quality of the shipped ensemble on held-out materials (precision, recall, F1, DAF)."""
    from hybridmat.console import console, invocation

    run_screening_benchmark(console, invocation(), data, split, limit, threshold, out, json_path)
