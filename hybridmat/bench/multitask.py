r"""``hybridmat bench multitask``: does sharing a trunk between e_form and band_gap help or hurt each?

On one split, with one architecture and one set of trainer settings, it trains a single-task model per
target (the multi-task model with one head) and the multi-task model on both targets twice: with fixed,
scale-balanced λ and with learned uncertainty weights. Per target it reports single- vs multi-task test
MAE and whether the transfer was negative (:func:`negative_transfer`, a pure function of predictions
and labels), and the Pearson correlation of the multi-task model's e_form and band_gap residuals.

Scale-balanced fixed λ. In raw units the per-target L1 losses have different scales (on mp_cgcnn36k
σ(e_form) ≈ 1.1 eV/atom, σ(band_gap) ≈ 1.75 eV), so the scale-balanced choice is :math:`\lambda_t =
1/\sigma_t`, with :math:`\sigma_t` the population standard deviation of target :math:`t` over the
labelled training rows: each loss is counted in units of its own spread. The trainer already
standardises every target with exactly these :math:`\sigma_t`
(:class:`~hybridmat.training.normalizer.TargetNormalizer`, fitted on the training split) before
:class:`~hybridmat.models.losses.MultiTaskLoss`, so :math:`L^{\mathrm{norm}}_t = L^{\mathrm{raw}}_t /
\sigma_t` and the scale-balanced λ on normalised targets is :math:`\lambda = (1, 1)`; the fixed run
passes it explicitly. The JSON records :math:`\sigma_t`, the equivalent raw-unit :math:`\lambda_t =
1/\sigma_t`, and for the uncertainty run the learned weights :math:`e^{-s_t}` (normalised units;
:math:`e^{-s_t}/\sigma_t` in raw units).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:  # the torch stack is imported when a benchmark runs, not when the CLI starts
    from hybridmat.training.trainer import TrainResult
    from hybridmat.workflows.fitting import Fitted

TARGETS = ("e_form", "band_gap")
MULTI_TASK_MODELS = ("multitask", "multitask_gat")
WEIGHTINGS = ("fixed", "uncertainty")


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation, NaN when it is undefined (fewer than 3 pairs, or a constant side)."""
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def negative_transfer(
    labels: np.ndarray, single: np.ndarray, multi: np.ndarray, target_names: Sequence[str]
) -> dict[str, Any]:
    """Per target, single- vs multi-task MAE and whether transfer was negative; residual correlations.

    ``labels``, ``single`` and ``multi`` are ``(n, T)`` test labels (NaN where missing) and the
    single-task (column ``t`` from the model trained on target ``t`` alone) and multi-task predictions.
    For target ``t``, on the rows labelled for it: ``single_mae``, ``multi_mae``, ``delta`` = multi −
    single, ``delta_se`` = the paired standard error of ``delta`` over the test rows (std of the per-row
    differences of absolute errors / √n; it measures test-sampling noise, not seed-to-seed variance),
    ``relative`` = delta / single_mae, and ``negative`` = multi-task MAE above single-task MAE.
    ``residual_correlation["a~b"]`` is the Pearson correlation of the multi-task residuals
    (prediction − label) of targets ``a`` and ``b`` on the rows where both labels exist.
    """
    labels, single, multi = (np.asarray(a, dtype=np.float64) for a in (labels, single, multi))
    names = list(target_names)
    if not labels.shape == single.shape == multi.shape == (len(labels), len(names)):
        raise ValueError(f"labels {labels.shape}, single {single.shape} and multi {multi.shape} must all be "
                         f"(n, {len(names)}) for targets {names}")
    rows = []
    for t, name in enumerate(names):
        labelled = np.isfinite(labels[:, t])
        n = int(labelled.sum())
        if n == 0:
            raise ValueError(f"no test row has a {name} label: transfer to {name} cannot be measured")
        single_error = np.abs(single[labelled, t] - labels[labelled, t])
        multi_error = np.abs(multi[labelled, t] - labels[labelled, t])
        difference = multi_error - single_error
        delta, single_mae = float(difference.mean()), float(single_error.mean())
        rows.append({
            "target": name, "n": n, "single_mae": single_mae, "multi_mae": float(multi_error.mean()),
            "delta": delta, "delta_se": float(difference.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
            "relative": delta / single_mae, "negative": delta > 0,
        })
    residual = multi - labels
    correlation = {}
    for a, b in combinations(range(len(names)), 2):
        both = np.isfinite(labels[:, a]) & np.isfinite(labels[:, b])
        correlation[f"{names[a]}~{names[b]}"] = _pearson(residual[both, a], residual[both, b])
    return {"targets": rows, "residual_correlation": correlation}


def transfer_table(reports: dict[str, dict[str, Any]], title: str) -> Table:
    """One row per target: single-task MAE, then per weighting the multi-task MAE, Δ ± se and the verdict."""
    table = Table(title=title)
    table.add_column("target", justify="left")
    table.add_column("single-task MAE", justify="right")
    for weighting in reports:
        for column in ("MAE", "Δ ± se", "transfer"):
            table.add_column(f"{weighting}: {column}", justify="right")
    first = next(iter(reports.values()))["targets"]
    for t, row in enumerate(first):
        cells = [row["target"], f"{row['single_mae']:.4f}"]
        for report in reports.values():
            r = report["targets"][t]
            cells += [f"{r['multi_mae']:.4f}", f"{r['delta']:+.4f} ± {r['delta_se']:.4f}",
                      "NEGATIVE" if r["negative"] else "positive"]
        table.add_row(*cells)
    return table


def run_multitask_benchmark(
    split: str, device: str, json_path: Path | None, console: Console, command: str, model: str = "multitask",
    data_path: Path | None = None, epochs: int | None = None, out: Path = Path("runs/bench_multitask"),
    seed: int = 0,
) -> dict[str, Any]:
    """Train the single- and multi-task runs on ``split``, print and return the transfer report (and JSON)."""
    from hybridmat.bench.data import default_mp_parquet
    from hybridmat.bench.models import PLANS, benchmark_store
    from hybridmat.training.ensemble import train_member
    from hybridmat.workflows.comparison import markdown_table
    from hybridmat.workflows.fitting import epoch_logger, evaluate, load_split_data, split_ids, write_json

    if split not in PLANS:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(PLANS)}")
    if model not in MULTI_TASK_MODELS:
        raise ValueError(f"unknown multi-task model {model!r}; choose one of {MULTI_TASK_MODELS}")
    started_all = time.perf_counter()
    plan, data_path = PLANS[split], data_path or default_mp_parquet()
    hyper = plan.hyper[model]
    config = plan.config(model, device, seed)
    config = replace(config, epochs=config.epochs if epochs is None else epochs)
    store = benchmark_store(data_path, console)
    ids = split_ids(store, split, data_path.with_name("splits.json"))
    data = load_split_data(store, ids, list(TARGETS))
    console.print(f"split {split}: " + ", ".join(f"{p} {len(data.part(p))}" for p in ("train", "val", "test"))
                  + f"; {model} {hyper}, {config.epochs} epochs")

    def train(label: str, targets: Sequence[str], weighting: str) -> tuple[TrainResult, float]:
        """One run on ``targets`` (the same ids; a row without any of these labels is dropped)."""
        part = data if list(targets) == list(TARGETS) else load_split_data(store, ids, list(targets))
        run_config = replace(config, loss_weighting=weighting,
                             loss_weights=(1.0,) * len(targets) if weighting == "fixed" else None)
        started = time.perf_counter()
        result = train_member(model, hyper, part.train, part.val, run_config, seed,
                              on_epoch_end=epoch_logger(console.log, label, 0))
        return result, time.perf_counter() - started

    singles = [train(f"{model} ({target})", [target], "fixed") for target in TARGETS]
    rows, single_pred, _ = evaluate(_fitted(model, singles), data.test, f"{model} single-task")
    labels = data.test.targets.numpy()
    reports, weights = {}, {}
    details = {f"single-task {t}": _summary(*run) for t, run in zip(TARGETS, singles)}
    for weighting in WEIGHTINGS:
        run = train(f"{model} ({weighting})", TARGETS, weighting)
        weighting_rows, multi_pred, _ = evaluate(_fitted(model, [run]), data.test, f"{model} {weighting}")
        rows += weighting_rows
        reports[weighting] = negative_transfer(labels, single_pred, multi_pred, TARGETS)
        weights[weighting] = _loss_weights(run[0])
        details[f"multi-task {weighting}"] = _summary(*run)

    title = f"negative transfer, {model} on mp_cgcnn36k {split} test (`{command}`)"
    console.print(transfer_table(reports, title))
    for weighting, report in reports.items():
        correlation = ", ".join(f"{pair} {r:+.3f}" for pair, r in report["residual_correlation"].items())
        learned = ", ".join(f"{t} {w:.3g}" for t, w in zip(TARGETS, weights[weighting]["normalised"]))
        console.print(f"{weighting}: multi-task residual correlation {correlation}; "
                      f"λ on normalised targets {learned}")
    sigma = ", ".join(f"{t} {s:.4f}" for t, s in zip(TARGETS, weights["fixed"]["sigma"]))
    console.print(f"training σ: {sigma} (fixed λ = 1/σ in raw units = 1 on the trainer's normalised targets)")
    total = time.perf_counter() - started_all
    console.print(f"total wall time {total / 60:.1f} min")
    payload = {"command": command, "split": split, "device": device, "model": model, "hyper": hyper,
               "train_config": config.as_dict(), "total_seconds": total,
               "sizes": {p: len(data.part(p)) for p in ("train", "val", "test")}, "results": rows,
               "transfer": reports, "loss_weights": weights, "details": details,
               "markdown": markdown_table(rows)}
    write_json(json_path or out / "results.json", payload)
    return payload


def _fitted(model: str, runs: Sequence[tuple[TrainResult, float]]) -> Fitted:
    """The runs as one :class:`~hybridmat.workflows.fitting.Fitted`: their prediction columns side by side."""
    from hybridmat.training.checkpoint import predict
    from hybridmat.workflows.fitting import Fitted

    def predict_columns(dataset: Any) -> tuple[np.ndarray, np.ndarray]:
        mean = np.column_stack([predict(result.model, result.normalizer, dataset) for result, _ in runs])
        return mean, np.zeros_like(mean)

    parameters = sum(p.numel() for result, _ in runs for p in result.model.parameters())
    return Fitted(model, predict_columns, sum(seconds for _, seconds in runs), parameters)


def _summary(result: TrainResult, seconds: float) -> dict[str, Any]:
    """Best epoch, epochs run, training seconds and mean seconds per epoch of one run."""
    return {"best_epoch": result.best_epoch, "epochs_run": len(result.history), "train_seconds": seconds,
            "seconds_per_epoch": float(np.mean([m["seconds"] for m in result.history])),
            "best_val_mae": result.best_val_mae}


def _loss_weights(result: TrainResult) -> dict[str, list[float]]:
    """σ_t of the training labels and the task weights, on normalised targets and in raw units (÷ σ_t)."""
    sigma = result.normalizer.std.double()
    loss = result.loss
    normalised = loss.weights.double() if loss.log_vars is None else (-loss.log_vars.detach().double()).exp()
    return {"sigma": sigma.tolist(), "normalised": normalised.tolist(), "raw": (normalised / sigma).tolist()}


def bench_multitask_command(
    split: Annotated[str, typer.Option(help="cpu_small (2 CPU cores) or full (GPU).")] = "cpu_small",
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the results JSON here.")] = None,
    model: Annotated[str, typer.Option(help="multitask (CGCNN) or multitask_gat (GATv2).")] = "multitask",
    epochs: Annotated[int | None, typer.Option(help="Epochs of every run (default: the plan's).")] = None,
    data: Annotated[Path | None, typer.Option(help="mp_cgcnn36k.parquet (default: ../shared/data).")] = None,
    out: Annotated[Path, typer.Option(help="Directory for results.json.")] = Path("runs/bench_multitask"),
) -> None:
    """Single- vs multi-task test MAE for e_form and band_gap (fixed λ vs uncertainty): negative transfer?"""
    from hybridmat.console import console, invocation

    run_multitask_benchmark(split, device, json_path, console, invocation(), model, data, epochs, out)
