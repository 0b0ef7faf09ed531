"""``hybridmat bench alignn``: our ALIGNN against the official ``alignn`` package, same size, same structures.

Both models are ALIGNN at the same size (2 ALIGNN + 2 edge-gated GCN layers, hidden and embedding 64, 80 bond
and 40 angle basis functions, the 92 CGCNN atom features) and train on the same batches of the same real
structures: the graphs (12 nearest neighbours within 8 Å) and bond-pair line graphs that hybridmat built are
handed to the package's pure-torch model (``alignn.models.alignn_atomwise_pure``, no DGL) as its own
``TorchGraph`` pair, so both do the work of exactly the same edges and triplets (the package recomputes the
angle cosines from the bond vectors, as it does in training). Each variant runs in a fresh process, so peak
memory and the heap setting (:mod:`hybridmat.training.heap`) belong to that variant alone:

* ``alignn package`` — the official model and a plain training loop (AdamW, one-cycle, L1 on standardised
  targets, like ours), as its users run it: the baseline (1.00x);
* ``alignn package, retained heap`` — the same with hybridmat's heap setting, to show what the setting alone
  is worth to anyone;
* ``hybridmat, system heap`` — our trainer before the speed work (``retain_heap=False``);
* ``hybridmat`` — our trainer as it runs now.

Training structures/s is the mean over the epochs after the first; inference is one pass over the training
structures in eval mode; validation MAE (eV/atom) after the same epochs shows that the speed work changes no
number. ``--profile`` adds where a training step's time goes (torch profiler, self time by kind of operator)
for our trainer with the system heap and with the retained heap.
"""

from __future__ import annotations

import multiprocessing
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from hybridmat.data.splits import load_splits
from hybridmat.features.atom_features import N_ATOM_FEATURES
from hybridmat.features.dataset import CrystalDataset
from hybridmat.training.collate import GraphTable
from hybridmat.training.heap import heap_retention_available, retained_heap
from hybridmat.training.trainer import steps_per_epoch
from hybridmat.workflows.fitting import write_json

#: The compared size: the issue's, and ``bench models``' cpu_small ALIGNN.
SIZE = {"hidden": 64, "embedding": 64, "alignn_layers": 2, "gcn_layers": 2, "distance_bins": 80, "angle_bins": 40}
BATCH = 64
LR = 1e-3
WEIGHT_DECAY = 1e-5
INFERENCE_BATCH = 256
WALL = "wall time (profiled epoch)"
#: Operator kinds of the profile table, by the aten operator's name.
KINDS = {
    "gather (index_select)": ("aten::index_select", "aten::index"),
    "scatter-add": ("aten::index_add_", "aten::scatter_add_", "aten::index_add"),
    "matmul": ("aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm"),
    "batch norm": ("aten::native_batch_norm", "aten::native_batch_norm_backward"),
    "element-wise": ("aten::mul", "aten::add", "aten::add_", "aten::sigmoid", "aten::sigmoid_backward",
                     "aten::silu", "aten::silu_backward", "aten::div", "aten::exp", "aten::sub", "aten::neg",
                     "aten::pow", "aten::mul_", "aten::div_"),
}


@dataclass(frozen=True)
class Variant:
    """One measured setting: whose ALIGNN and whether the heap is retained."""

    label: str
    implementation: str  # "alignn" (the official package) or "hybridmat"
    retain_heap: bool


VARIANTS = (
    Variant("alignn package", "alignn", False),
    Variant("alignn package, retained heap", "alignn", True),
    Variant("hybridmat, system heap (before)", "hybridmat", False),
    Variant("hybridmat", "hybridmat", True),
)


def official_available() -> bool:
    """Whether the official ``alignn`` package (``pip install -e .[peers]``) can be imported."""
    try:
        import alignn.models.alignn_atomwise_pure  # noqa: F401
    except ImportError:
        return False
    return True


def _datasets(store: Path, splits: Path, n: int, n_val: int, seed: int) -> tuple[CrystalDataset, CrystalDataset]:
    """A seeded sample of ``n`` cpu_small training structures and the first ``n_val`` validation ones."""
    split = load_splits(splits, "cpu_small")
    train_ids = sorted(np.random.default_rng(seed).choice(split["train"], size=min(n, len(split["train"])),
                                                           replace=False).tolist())
    train = CrystalDataset.from_store(store, ["e_form"], ids=train_ids, line_graph=True)
    val = CrystalDataset.from_store(store, ["e_form"], ids=split["val"][:n_val], line_graph=True)
    return train, val


def _usage() -> tuple[float, int]:
    """(peak resident MiB, minor page faults) of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_maxrss / 1024, usage.ru_minflt


def _official_model() -> torch.nn.Module:
    """The package's pure-torch ALIGNN at :data:`SIZE`, set up for a per-structure property (no forces)."""
    from alignn.models.alignn_atomwise_pure import ALIGNNAtomWisePure, ALIGNNAtomWisePureConfig

    config = ALIGNNAtomWisePureConfig(
        name="alignn_atomwise_pure", alignn_layers=SIZE["alignn_layers"], gcn_layers=SIZE["gcn_layers"],
        atom_input_features=N_ATOM_FEATURES, edge_input_features=SIZE["distance_bins"],
        triplet_input_features=SIZE["angle_bins"], embedding_features=SIZE["embedding"],
        hidden_features=SIZE["hidden"], output_features=1, calculate_gradient=False, gradwise_weight=0.0,
        energy_mult_natoms=False, use_penalty=False, use_zbl=False, lg_on_fly=True)
    return ALIGNNAtomWisePure(config)


def official_graphs(batch: Any) -> tuple[Any, Any, None]:
    """A hybridmat batch as the package's ``(g, lg, lattice)``: same edges, same bond pairs.

    The package's bond vector ``r`` points from source to destination; ours (``edge_vec``) from the centre
    (destination) to the neighbour (source), hence the sign. Its angle ``-(r_e1 . r_e2)/(|r_e1||r_e2|)`` is then
    our ``angle_cos`` exactly (both line graphs join ``e1 = k->j`` to ``e2 = j->i``).
    """
    from alignn.torch_graph_builder import TorchGraph

    graph = TorchGraph(num_nodes=batch.num_nodes, src=batch.edge_index[0], dst=batch.edge_index[1],
                       ndata={"atom_features": batch.x}, edata={"r": -batch.edge_vec},
                       batch_num_nodes=torch.diff(batch.ptr))
    line = TorchGraph(num_nodes=batch.edge_index.shape[1], src=batch.line_edge_index[0],
                      dst=batch.line_edge_index[1])
    return graph, line, None


def _train_official(train: CrystalDataset, val: CrystalDataset, epochs: int, seed: int) -> dict[str, Any]:
    """The package's model in a plain loop: AdamW, one-cycle, L1 on standardised targets, same batches."""
    torch.manual_seed(seed)
    model = _official_model()
    table, val_table = GraphTable.from_dataset(train), GraphTable.from_dataset(val)
    mean, std = float(np.nanmean(table.y[:, 0])), float(np.nanstd(table.y[:, 0]))
    optimiser = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=LR,
                                                   total_steps=epochs * steps_per_epoch(len(table), BATCH))
    rates = []
    for epoch in range(epochs):
        model.train()
        order = np.random.default_rng((seed, epoch)).permutation(len(table))
        started = time.perf_counter()
        for batch in table.batches(BATCH, order, drop_singleton=True):
            loss = (model(official_graphs(batch))["out"] - (batch.y[:, 0] - mean) / std).abs().mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
        rates.append(len(table) / (time.perf_counter() - started))

    def predict(graphs: GraphTable) -> np.ndarray:
        model.eval()
        with torch.inference_mode():
            return np.concatenate([model(official_graphs(b))["out"].numpy() * std + mean
                                   for b in graphs.batches(INFERENCE_BATCH)])

    val_mae = float(np.nanmean(np.abs(predict(val_table) - val_table.y[:, 0])))
    started = time.perf_counter()
    predict(table)
    return {"rates": rates, "val_mae": val_mae, "infer_per_s": len(table) / (time.perf_counter() - started)}


def _train_ours(train: CrystalDataset, val: CrystalDataset, epochs: int, seed: int,
                retain_heap: bool) -> dict[str, Any]:
    """Our ALIGNN through the trainer (``train_model``), then one inference pass."""
    from hybridmat.models.base import build_model
    from hybridmat.training.checkpoint import predict_table
    from hybridmat.training.trainer import TrainConfig, train_model

    torch.manual_seed(seed)
    model = build_model("alignn", n_targets=1, **SIZE)
    config = TrainConfig(epochs=epochs, batch_size=BATCH, lr=LR, weight_decay=WEIGHT_DECAY, patience=None,
                         seed=seed, device="cpu", retain_heap=retain_heap)
    result = train_model(model, train, val, config)
    table = GraphTable.from_dataset(train)
    started = time.perf_counter()
    predict_table(result.model, result.normalizer, table, INFERENCE_BATCH, retain_heap=retain_heap)
    infer = len(table) / (time.perf_counter() - started)
    return {"rates": [h["structures_per_s"] for h in result.history], "val_mae": float(result.history[-1]["val_mae"]),
            "infer_per_s": infer}


def measure(variant: Variant, store: Path, splits: Path, n: int, n_val: int, epochs: int, seed: int,
            threads: int) -> dict[str, Any]:
    """One variant, start to end, in the calling process (run it in a fresh one)."""
    torch.set_num_threads(threads)
    train, val = _datasets(store, splits, n, n_val, seed)
    _, faults_before = _usage()
    if variant.implementation == "alignn":
        with retained_heap(variant.retain_heap):
            figures = _train_official(train, val, epochs, seed)
    else:
        figures = _train_ours(train, val, epochs, seed, variant.retain_heap)
    peak, faults_after = _usage()
    timed = figures["rates"][1:] or figures["rates"]
    return {**asdict(variant), "n": len(train), "epochs": epochs, "threads": threads,
            "train_per_s": float(np.mean(timed)), "epoch_rates": figures["rates"], "val_mae": figures["val_mae"],
            "infer_per_s": figures["infer_per_s"], "peak_rss_mib": peak,
            "page_faults_per_structure": (faults_after - faults_before) / (len(train) * epochs)}


def profile(retain_heap: bool, store: Path, splits: Path, n: int, seed: int, threads: int) -> dict[str, float]:
    """Self CPU seconds per 1,000 trained structures by operator kind (summed over threads), and the step's
    wall seconds per 1,000 (:data:`WALL`), for our trainer's model and step."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from hybridmat.models.base import build_model

    torch.set_num_threads(threads)
    train, _ = _datasets(store, splits, n, 1, seed)
    table = GraphTable.from_dataset(train)
    torch.manual_seed(seed)
    model = build_model("alignn", n_targets=1, **SIZE)
    optimiser = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)

    def epoch() -> None:
        for batch in table.batches(BATCH, np.random.default_rng(seed).permutation(len(table)), drop_singleton=True):
            loss = (model(batch)[:, 0] - batch.y[:, 0]).abs().mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()

    with retained_heap(retain_heap):
        epoch()  # warm-up
        with torch_profile(activities=[ProfilerActivity.CPU]) as recorded:
            started = time.perf_counter()
            epoch()
            wall = time.perf_counter() - started
    seconds = {kind: 0.0 for kind in (*KINDS, "other")}
    for event in recorded.key_averages():
        kind = next((k for k, names in KINDS.items() if event.key in names), "other")
        seconds[kind] += event.self_cpu_time_total / 1e6
    seconds[WALL] = wall
    return {kind: value * 1000 / len(table) for kind, value in seconds.items()}


def _in_fresh_process(function: Any, *args: Any) -> Any:
    """``function(*args)`` in a new spawned interpreter (its own heap settings and peak memory)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def run_alignn_benchmark(data: Path, n: int, n_val: int, epochs: int, seed: int, threads: int, with_profile: bool,
                         console: Console, command: str, json_path: Path | None) -> dict[str, Any]:
    """Measure every variant (the package's only where it is installed); print and optionally save the tables."""
    from hybridmat.bench.models import benchmark_store

    store, splits = benchmark_store(data, console).path, data.parent / "splits.json"
    with_official = official_available()
    variants = [v for v in VARIANTS if v.implementation == "hybridmat" or with_official]
    if not with_official:
        console.print("[yellow]the official alignn package is not installed (pip install -e .[peers]): "
                      "measuring hybridmat only[/yellow]")
    if not heap_retention_available():
        console.print("[yellow]not glibc: the heap setting does nothing here[/yellow]")
    rows = []
    for variant in variants:
        console.print(f"measuring {variant.label} ...")
        rows.append(_in_fresh_process(measure, variant, store, splits, n, n_val, epochs, seed, threads))
    console.print(speed_table(rows, command))
    payload: dict[str, Any] = {"command": command, "size": SIZE, "batch": BATCH, "rows": rows}
    if with_profile:
        before = _in_fresh_process(profile, False, store, splits, min(n, 512), seed, threads)
        after = _in_fresh_process(profile, True, store, splits, min(n, 512), seed, threads)
        payload["profile"] = {"system_heap": before, "retained_heap": after}
        console.print(profile_table(before, after, command))
    if json_path:
        write_json(json_path, payload)
    return payload


def speed_table(rows: list[dict[str, Any]], command: str) -> Table:
    """Training/inference structures/s, the ratio to the first row, validation MAE, memory, page faults."""
    base = rows[0]
    table = Table(title=f"ALIGNN (2+2 layers, hidden 64) on {base['n']:,} cpu_small structures, batch {BATCH}, "
                        f"{base['threads']} threads, {base['epochs']} epochs (`{command}`)")
    for column in ("variant", "train /s", "vs first", "infer /s", "vs first", f"val MAE after {base['epochs']}",
                   "peak MiB", "page faults / structure"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for row in rows:
        table.add_row(row["label"], f"{row['train_per_s']:.1f}", f"{row['train_per_s'] / base['train_per_s']:.2f}x",
                      f"{row['infer_per_s']:.1f}", f"{row['infer_per_s'] / base['infer_per_s']:.2f}x",
                      f"{row['val_mae']:.4f}", f"{row['peak_rss_mib']:,.0f}",
                      f"{row['page_faults_per_structure']:,.0f}")
    return table


def profile_table(before: dict[str, float], after: dict[str, float], command: str) -> Table:
    """Self CPU seconds per 1,000 trained structures by operator kind, system heap vs retained heap."""
    table = Table(title=f"Where an ALIGNN training step's time goes: self CPU s per 1,000 structures (`{command}`)")
    for column in ("operators", "system heap", "retained heap", "ratio"):
        table.add_column(column, justify="left" if column == "operators" else "right")
    kinds = [kind for kind in before if kind != WALL]
    totals = {"operators, total": (sum(before[k] for k in kinds), sum(after[k] for k in kinds)),
              WALL: (before[WALL], after[WALL])}
    for kind, (old, new) in [*((k, (before[k], after[k])) for k in kinds), *totals.items()]:
        table.add_row(kind, f"{old:.1f}", f"{new:.1f}", f"{old / new:.2f}x" if new else "")
    return table
