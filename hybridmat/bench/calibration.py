"""``hybridmat bench calibration``: do the shipped ensemble's intervals cover what they claim, on held-out data?

The ensemble (calibrated on ``full/val``) predicts ``full/test``. Per target: coverage of the raw ±1/±2 std and
of the calibrated 68/90/95 % intervals, in and out of domain, the miscalibration area of the reliability curve
and the rank correlation between |error| and the spread; a reliability diagram is drawn to ``OUT``. The domain
score is judged by how well it separates the test split from structures the model never saw, the Castelli
perovskites and the prototype candidates the plausibility filter rejects (AUROC, 0.5 = no better than chance),
and by its speed.
"""

from __future__ import annotations

import time
from io import BytesIO
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from hybridmat.bench.data import default_mp_parquet

LEVELS = (0.6827, 0.90, 0.95)
#: Candidates generated (demo elements, default prototypes, seed 0) to find filter-rejected ones.
REJECTED_POOL = 4000


def rejected_candidates(n: int = REJECTED_POOL) -> list[Any]:
    """The candidates of a seeded sample of ``n`` that the plausibility filter rejects (implausible chemistry)."""
    from hybridmat.data.candidates import DEFAULT_PROTOTYPES, DEMO_ELEMENTS, generate_candidates
    from hybridmat.data.plausibility import assess

    records = generate_candidates(DEMO_ELEMENTS, DEFAULT_PROTOTYPES, n=n, seed=0)
    return [record for record in records if not assess(record).kept]


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """Probability that an ``outside`` score exceeds an ``inside`` one (Mann-Whitney U / n1 n2; ties count 1/2)."""
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([inside, outside]))
    n_in, n_out = len(inside), len(outside)
    return float((ranks[n_in:].sum() - n_out * (n_out + 1) / 2) / (n_in * n_out))


def target_figures(calibration: Any, y: np.ndarray, mean: np.ndarray, std: np.ndarray, scores: np.ndarray,
                   in_domain: np.ndarray) -> dict[str, Any]:
    """Coverage (raw, calibrated, in/out of domain), miscalibration area and the reliability curve of one target."""
    from scipy.stats import spearmanr

    from hybridmat.training.calibration import coverage, miscalibration_area, reliability_curve

    known = np.isfinite(y)
    y, mean, std, scores, in_domain = y[known], mean[known], std[known], scores[known], in_domain[known]
    expected, observed = reliability_curve(calibration, y, mean, std, scores)
    figures: dict[str, Any] = {
        "rows": len(y), "raw_1std": coverage(y, mean - std, mean + std),
        "raw_2std": coverage(y, mean - 2 * std, mean + 2 * std),
        "spearman_abs_error_std": float(spearmanr(np.abs(y - mean), std)[0]),
        "miscalibration_area": miscalibration_area(expected, observed),
        "reliability": {"expected": expected.tolist(), "observed": observed.tolist()},
    }
    for level in LEVELS:
        lo, hi = calibration.interval(mean, std, level, scores)
        key = f"{round(level * 100)}"
        figures[f"coverage_{key}"] = coverage(y, lo, hi)
        figures[f"coverage_{key}_in_domain"] = coverage(y[in_domain], lo[in_domain], hi[in_domain])
        figures[f"coverage_{key}_out_of_domain"] = coverage(y[~in_domain], lo[~in_domain], hi[~in_domain])
        figures[f"width_{key}"] = float(np.mean(hi - lo))  # sharpness: coverage alone rewards wide intervals
    return figures


def reliability_diagram(figures: dict[str, Any], path: Path, title: str) -> None:
    """Expected vs observed coverage of the central intervals, one line per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hybridmat.atomic_io import atomic_write_bytes

    fig, ax = plt.subplots(figsize=(4.8, 4.6))
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", label="ideal")
    for target, values in figures["targets"].items():
        curve = values["reliability"]
        ax.plot(curve["expected"], curve["observed"], marker="o", markersize=3,
                label=f"{target} (area {values['miscalibration_area']:.3f})")
    ax.set_xlabel("expected coverage of the central interval")
    ax.set_ylabel("observed coverage on test")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = BytesIO()
    fig.savefig(buffer, format="png", dpi=150)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def run_calibration_benchmark(console: Console, command: str, data_path: Path | None = None, split: str = "full",
                              limit: int | None = None, out: Path = Path("runs/bench_calibration"),
                              json_path: Path | None = None) -> dict[str, Any]:
    """Measure the shipped ensemble's calibration and domain score on ``split``/test; print, draw, return."""
    from hybridmat.data.shared import SHARED_DATA
    from hybridmat.data.source_strings import open_source
    from hybridmat.workflows.calibrate import labelled_predictions, training_compositions
    from hybridmat.workflows.fitting import write_json
    from hybridmat.workflows.predict import load_predictor

    predictor = load_predictor()
    if predictor.calibration is None or predictor.domain is None:
        raise ValueError("the shipped ensemble has no calibration: run `hybridmat calibrate hybridmat/pretrained`")
    data_path = Path(data_path or default_mp_parquet())
    source = f"{data_path}?split={split}/test" + (f"&limit={limit}" if limit else "")
    started = time.perf_counter()
    test = labelled_predictions(predictor, open_source(source))
    predict_seconds = time.perf_counter() - started
    started = time.perf_counter()
    scores = predictor.domain.score(test.composition)
    score_rate = len(scores) / max(time.perf_counter() - started, 1e-9)
    in_domain = predictor.domain.in_domain(scores)
    targets = {name: target_figures(predictor.calibration[name], test.labels[:, t], test.mean[:, t], test.std[:, t],
                                    scores, in_domain) for t, name in enumerate(predictor.target_names)}
    castelli_path = SHARED_DATA / "perov5_castelli" / "perov5_castelli.parquet"
    foreign = {
        "castelli": training_compositions(open_source(str(castelli_path)), predictor.settings.composition),
        "rejected": training_compositions(rejected_candidates(), predictor.settings.composition),
    }
    domain: dict[str, Any] = {"threshold": predictor.domain.threshold, "test_out_of_domain": float(np.mean(~in_domain)),
                              "scores_per_second": score_rate}
    for name, compositions in foreign.items():
        foreign_scores = predictor.domain.score(compositions)
        domain |= {f"{name}_rows": len(foreign_scores),
                   f"{name}_out_of_domain": float(np.mean(~predictor.domain.in_domain(foreign_scores))),
                   f"auroc_{name}": auroc(scores, foreign_scores)}
    figures = {
        "command": command, "source": source, "model_id": predictor.model_id,
        "calibration": predictor.calibration.fitted_on, "test_rows": len(test.ids), "errors": test.errors,
        "targets": targets, "domain": domain,
        "predict_seconds": predict_seconds,
    }
    title = f"calibration on {split}/test, shipped ensemble ({command})"
    console.print(results_table(figures, title))
    reliability_diagram(figures, Path(out) / "reliability.png", f"{split}/test, shipped ensemble\n{command}")
    console.print(f"reliability diagram -> {Path(out) / 'reliability.png'}; prediction {predict_seconds:.0f} s")
    if json_path:
        write_json(json_path, figures)
    return figures


def results_table(figures: dict[str, Any], title: str) -> Table:
    """One row per measure, one column per target."""
    names = list(figures["targets"])
    table = Table(title=title)
    table.add_column("measure")
    for name in names:
        table.add_column(name, justify="right")
    rows = [("test rows", "rows", "{:,}"), ("raw ±1 std covers (ideal 0.683)", "raw_1std", "{:.3f}"),
            ("raw ±2 std covers (ideal 0.954)", "raw_2std", "{:.3f}"),
            ("Spearman |error| vs std", "spearman_abs_error_std", "{:.3f}")]
    for level in LEVELS:
        key = round(level * 100)
        rows += [(f"calibrated {key} % interval covers", f"coverage_{key}", "{:.3f}"),
                 ("  in domain / out of domain", f"coverage_{key}_in_domain", "{:.3f}"),
                 ("  mean width", f"width_{key}", "{:.3f}")]
    rows.append(("miscalibration area", "miscalibration_area", "{:.4f}"))
    for label, key, form in rows:
        if label.startswith("  in domain"):
            level = key.split("_")[1]
            table.add_row(label, *(f"{form.format(figures['targets'][n][key])} / "
                                   f"{form.format(figures['targets'][n][f'coverage_{level}_out_of_domain'])}"
                                   for n in names))
        else:
            table.add_row(label, *(form.format(figures["targets"][n][key]) for n in names))
    domain = figures["domain"]
    table.add_row("domain: test rows out of domain", f"{domain['test_out_of_domain']:.3f}", "")
    for name, label in (("castelli", "Castelli perovskites"), ("rejected", "filter-rejected candidates")):
        table.add_row(f"domain: {label} out of domain (of {domain[f'{name}_rows']:,})",
                      f"{domain[f'{name}_out_of_domain']:.3f}", "")
        table.add_row(f"domain: AUROC test vs {label}", f"{domain[f'auroc_{name}']:.3f}", "")
    table.add_row("domain: scores per second (1 core)", f"{domain['scores_per_second']:,.0f}", "")
    return table


def bench_calibration_command(
    split: Annotated[str, typer.Option(help="Split of splits.json: measure on NAME/test.")] = "full",
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N test structures (a quick check).")] = None,
    data: Annotated[Path | None, typer.Option(help="mp_cgcnn36k.parquet (default: ../shared/data/...).")] = None,
    out: Annotated[Path, typer.Option(help="Directory for reliability.png.")] = Path("runs/bench_calibration"),
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the figures as JSON here.")] = None,
) -> None:
    """Coverage of the calibrated intervals on held-out data, reliability diagram, domain-score AUROC."""
    from hybridmat.console import console, invocation

    run_calibration_benchmark(console, invocation(), data, split, limit, out, json_path)
