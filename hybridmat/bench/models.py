"""``hybridmat bench models``: every model on the same real split of ``mp_cgcnn36k``, selected on val,
reported on test, with the checks the hybrids exist for (does each hybrid beat both parents? does
ALIGNN beat CGCNN?) evaluated on the measured numbers.

Plans fix, per split, each model's size and training length so the whole benchmark fits its budget:
``cpu_small`` (4,000 / 500 / 1,000) on 2 CPU cores in ≤ 45 minutes, ``full`` (29,392 / 3,673 / 3,673)
on one GPU. The ``cpu_small`` jobs in ``jobs/`` use the same settings as this plan (a test keeps them equal).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from hybridmat.bench.data import default_mp_parquet
from hybridmat.data.source_strings import open_source
from hybridmat.features.featurizer import FeaturizerSettings
from hybridmat.features.pipeline import featurize_to_store
from hybridmat.features.store import FeatureStore
from hybridmat.models.base import model_class
from hybridmat.models.late_fusion import LateFusion
from hybridmat.models.rf import RandomForestModel
from hybridmat.training.trainer import TrainConfig
from hybridmat.workflows.comparison import comparison_figure, comparison_table, markdown_table, parity_figure
from hybridmat.workflows.fitting import (
    Fitted,
    evaluate,
    fit_late_fusion,
    fit_rf,
    fit_torch,
    load_split_data,
    split_ids,
    write_json,
)
from hybridmat.workflows.importance import permutation_importance

#: Hybrids and their two parents; ALIGNN is compared with CGCNN and with itself without the line graph.
PARENTS = {"early_fusion": ("rf", "cgcnn"), "late_fusion": ("rf", "cgcnn"), "attention_fusion": ("rf", "cgcnn")}
MODEL_ORDER = ("rf", "cgcnn", "early_fusion", "late_fusion", "attention_fusion", "alignn", "alignn_simple",
               "multitask", "multitask_gat")
#: Models trained on e_form and band_gap together (their e_form row is the one compared).
MULTI_TARGET = ("multitask", "multitask_gat")


@dataclass(frozen=True)
class Plan:
    """Per-model hyper-parameters and trainer settings for one split."""

    hyper: dict[str, dict[str, Any]]
    train: dict[str, dict[str, Any]]
    base: TrainConfig = field(default_factory=TrainConfig)

    def config(self, model: str, device: str, seed: int) -> TrainConfig:
        return replace(self.base, device=device, seed=seed, **self.train.get(model, {}))


GNN = {"hidden": 64, "n_conv": 3}
GAT = {"hidden": 64, "n_layers": 3, "heads": 4}
PLANS = {
    "cpu_small": Plan(
        hyper={"rf": {"n_estimators": 300}, "cgcnn": GNN, "early_fusion": GNN, "attention_fusion": GNN,
               "multitask": GNN, "alignn": {"hidden": 64, "alignn_layers": 2, "gcn_layers": 2},
               "alignn_simple": {"hidden": 64, "n_layers": 4}, "multitask_gat": GAT},
        train={"alignn": {"epochs": 24, "patience": 10}, "alignn_simple": {"epochs": 24, "patience": 10},
               "multitask_gat": {"epochs": 40, "patience": 10}},
        base=TrainConfig(epochs=80, batch_size=64, lr=2e-3, patience=20),
    ),
    "full": Plan(
        hyper={"rf": {"n_estimators": 300}, "cgcnn": GNN, "early_fusion": GNN, "attention_fusion": GNN,
               "multitask": GNN, "alignn": {}, "alignn_simple": {}, "multitask_gat": GAT},
        train={"alignn": {"epochs": 100, "lr": 1e-3}, "alignn_simple": {"epochs": 100, "lr": 1e-3}},
        base=TrainConfig(epochs=200, batch_size=128, lr=2e-3, patience=30),
    ),
}


def benchmark_store(data_path: Path, console: Console) -> FeatureStore:
    """The featurized dataset (featurized once into runs/features, reused afterwards)."""
    out = Path("runs/features") / data_path.stem
    started = time.perf_counter()
    featurize_to_store(open_source(str(data_path)), out, spec=str(data_path), settings=FeaturizerSettings(),
                       require_targets=False, progress=True)
    console.print(f"feature store {out} ready in {time.perf_counter() - started:.0f} s")
    return FeatureStore(out)


def hybrid_checks(rows: Sequence[dict[str, Any]], target: str = "e_form") -> list[dict[str, Any]]:
    """For each hybrid: its MAE against both parents'; for ALIGNN against CGCNN."""
    mae = {r["model"]: r["mae"] for r in rows if r["target"] == target}
    checks = []
    for hybrid, parents in PARENTS.items():
        if hybrid in mae and all(p in mae for p in parents):
            checks.append({"claim": f"{hybrid} beats {' and '.join(parents)}",
                           "holds": mae[hybrid] < min(mae[p] for p in parents),
                           "mae": mae[hybrid], "parents": {p: mae[p] for p in parents}})
    for baseline in ("cgcnn", "alignn_simple"):  # alignn_simple: the same model without the line graph
        if "alignn" in mae and baseline in mae:
            checks.append({"claim": f"alignn beats {baseline}", "holds": mae["alignn"] < mae[baseline],
                           "mae": mae["alignn"], "parents": {baseline: mae[baseline]}})
    return checks


def equal_wall_time_check(fitted: Mapping[str, Fitted]) -> dict[str, Any] | None:
    """Does ALIGNN beat CGCNN when both get CGCNN's training time? Best validation MAE of each within it."""
    if "alignn" not in fitted or "cgcnn" not in fitted:
        return None
    cgcnn, alignn = fitted["cgcnn"].details["curves"][0], fitted["alignn"].details["curves"][0]
    budget = cgcnn[-1][0]
    within = [mae for seconds, mae in alignn if seconds <= budget]
    alignn_mae = min(within) if within else float("nan")
    cgcnn_mae = min(mae for _, mae in cgcnn)
    return {"claim": f"alignn beats cgcnn at equal wall time ({budget:.0f} s, validation MAE)",
            "holds": alignn_mae < cgcnn_mae, "mae": alignn_mae, "parents": {"cgcnn": cgcnn_mae},
            "alignn_epochs_within": len(within)}


def run_models_benchmark(
    split: str, device: str, json_path: Path | None, console: Console, command: str,
    models: Sequence[str] = MODEL_ORDER, data_path: Path | None = None, out: Path = Path("runs/bench_models"),
    seed: int = 0,
) -> dict[str, Any]:
    """Train and evaluate ``models`` on ``split``; print the table and checks; write JSON and figures."""
    if split not in PLANS:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(PLANS)}")
    unknown = set(models) - set(MODEL_ORDER)
    if unknown:
        raise ValueError(f"unknown model(s) {sorted(unknown)}; choose from {MODEL_ORDER}")
    late_parents = PARENTS["late_fusion"]
    if "late_fusion" in models and not set(late_parents) <= set(models[: list(models).index("late_fusion")]):
        raise ValueError(f"late_fusion combines {' and '.join(late_parents)}: list both before it")
    started_all = time.perf_counter()
    plan, data_path = PLANS[split], data_path or default_mp_parquet()
    out.mkdir(parents=True, exist_ok=True)
    store = benchmark_store(data_path, console)
    ids = split_ids(store, split, data_path.with_name("splits.json"))
    data = load_split_data(store, ids, ["e_form"])
    console.print(f"split {split}: " + ", ".join(f"{p} {len(data.part(p))}" for p in ("train", "val", "test"))
                  + f" (dropped {data.dropped})")
    fitted: dict[str, Fitted] = {}
    rows: list[dict[str, Any]] = []
    predictions: dict[str, tuple[Any, Any]] = {}
    importance: dict[str, Any] = {}
    for name in models:
        started = time.perf_counter()
        model_data = load_split_data(store, ids, ["e_form", "band_gap"]) if name in MULTI_TARGET else data
        cls = model_class(name)
        if cls.needs_line_graph:
            model_data = model_data.with_line_graph()
        if issubclass(cls, RandomForestModel):
            model = fit_rf(model_data, plan.hyper[name], None)
        elif issubclass(cls, LateFusion):  # reuses the parents fitted above
            model = fit_late_fusion(*(fitted[parent] for parent in PARENTS[name]), model_data)
        else:
            model = fit_torch(name, plan.hyper[name], model_data, plan.config(name, device, seed), log=console.log)
        fitted[name] = model
        model_rows, mean, _ = evaluate(model, model_data.test)
        rows += model_rows
        predictions[name] = (model_data.test.targets.numpy()[:, 0], mean[:, 0])
        if name in PARENTS:
            importance[name] = permutation_importance(lambda d, m=model: m.predict(d)[0], model_data.test, repeats=3)
        console.print(f"{name}: test MAE {model_rows[0]['mae']:.4f} eV/atom, {time.perf_counter() - started:.0f} s")
    checks = hybrid_checks(rows)
    equal_time = equal_wall_time_check(fitted)
    if equal_time is not None:
        checks.append(equal_time)
    console.print(comparison_table(rows, title=f"models on mp_cgcnn36k {split} (test split; `{command}`)"))
    for check in checks:
        console.print(f"{'holds' if check['holds'] else 'DOES NOT HOLD'}: {check['claim']} "
                      f"({check['mae']:.4f} vs {check['parents']})")
    total = time.perf_counter() - started_all
    console.print(f"total wall time {total / 60:.1f} min")
    comparison_figure(rows, out / "comparison.png", "e_form")
    parity_figure(predictions, out / "parity.png", "e_form")
    payload = {"command": command, "split": split, "device": device, "total_seconds": total,
               "sizes": {p: len(data.part(p)) for p in ("train", "val", "test")},
               "results": rows, "checks": checks, "permutation_importance": importance,
               "details": {n: {k: v for k, v in f.details.items() if k != "ensemble"} for n, f in fitted.items()},
               "markdown": markdown_table(rows)}
    write_json(json_path or out / "results.json", payload)
    return payload
