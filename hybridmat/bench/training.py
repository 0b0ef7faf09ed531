"""``hybridmat bench training``: where a CPU training epoch goes, measured in one run.

The same real structures are fed to CGCNN three ways; each is timed for collation alone and for full
training steps (forward, backward, AdamW):

* ``PyG DataLoader, first epoch``: items built by ``to_pyg`` on first access, then
  ``Batch.from_data_list`` — the first epoch of a plain PyG loop;
* ``PyG DataLoader, cached items``: the same loader once every item is cached (later epochs);
* ``GraphTable``: hybridmat's collation from concatenated arrays (what the trainer uses).

With several sizes (``--n 2000,29392``) the trainer's own path (``GraphTable``) is also timed on a table of each
size, to see whether a step costs more on a big table. Every size is a seeded random sample of the store, never its
first rows: a store keeps its source's order, and the first 2,000 rows of ``mp_cgcnn36k`` (sorted by mp-id) average
9.6 sites against 28 for the whole table, which alone makes them ~3x faster per structure.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch_geometric.loader import DataLoader

from hybridmat.bench.data import sample_table
from hybridmat.features.dataset import CrystalDataset
from hybridmat.features.store import FeatureStore
from hybridmat.models.base import build_model
from hybridmat.training.collate import GraphTable
from hybridmat.workflows.fitting import write_json

BATCH = 64


def _seconds(function: Callable[[], None]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def _train_steps(batches: Iterable[Any], composition_dim: int) -> None:
    """One pass of CGCNN training steps (the paper's size) over ``batches``."""
    torch.manual_seed(0)
    model = build_model("cgcnn", n_targets=1, composition_dim=composition_dim)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for batch in batches:
        if batch.num_graphs < 2:
            continue
        loss = (model(batch)[:, 0] - batch.y[:, 0]).abs().mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()


def run_training_benchmark(store: Path, sizes: list[int], threads: int, console: Console, command: str,
                           json_path: Path | None) -> dict[str, Any]:
    """Collation and training structures/s for each way of batching on the first size, and the trainer's path
    (GraphTable) on every size; print and optionally save."""
    torch.set_num_threads(threads)
    full = FeatureStore(store).read_table()
    n = sizes[0]
    table = sample_table(full, n)
    n = table.num_rows
    composition_dim = table.column("composition").type.list_size
    order = np.random.default_rng(0).permutation(table.num_rows)

    def pyg_loader(dataset: CrystalDataset) -> DataLoader:
        return DataLoader(dataset, batch_size=BATCH, sampler=order.tolist())

    def fresh() -> CrystalDataset:
        return CrystalDataset.from_table(table, ["e_form"])

    cached = fresh()
    for _ in pyg_loader(cached):
        pass
    ways: dict[str, Callable[[], Iterable[Any]]] = {
        "PyG DataLoader, first epoch": lambda: pyg_loader(fresh()),
        "PyG DataLoader, cached items": lambda: pyg_loader(cached),
        "GraphTable (hybridmat), table built each time": lambda: GraphTable.from_dataset(fresh()).batches(BATCH, order),
    }
    rows = []
    for name, batches in ways.items():
        collate = _seconds(lambda batches=batches: [None for _ in batches()])
        train = _seconds(lambda batches=batches: _train_steps(batches(), composition_dim))
        rows.append({"way": name, "collate_per_s": n / collate, "train_per_s": n / train})
    result = Table(title=f"CGCNN (hidden 64, 3 conv) training on {n} MP structures, {threads} threads (`{command}`)")
    for column in ("batching", "collation /s", "training /s", "vs first-epoch PyG"):
        result.add_column(column, justify="left" if column == "batching" else "right")
    for row in rows:
        result.add_row(row["way"], f"{row['collate_per_s']:,.0f}", f"{row['train_per_s']:,.0f}",
                       f"{row['train_per_s'] / rows[0]['train_per_s']:.2f}x")
    console.print(result)
    by_size = [size_figures(sample_table(full, size), threads) for size in sizes] if len(sizes) > 1 else []
    if by_size:
        console.print(size_table(by_size))
    payload = {"command": command, "n": n, "threads": threads, "rows": rows, "sizes": by_size}
    if json_path:
        write_json(json_path, payload)
    return payload


def size_figures(table: Any, threads: int) -> dict[str, Any]:
    """The trainer's path on one table: structures/s and atoms/s of one shuffled training pass."""
    dataset = CrystalDataset.from_table(table, ["e_form"])
    graphs = GraphTable.from_dataset(dataset)
    order = np.random.default_rng(0).permutation(len(graphs))
    seconds = _seconds(lambda: _train_steps(graphs.batches(BATCH, order), table.column("composition").type.list_size))
    atoms = int(graphs.node_ptr[-1])
    return {"n": len(graphs), "mean_sites": atoms / len(graphs), "train_per_s": len(graphs) / seconds,
            "atoms_per_s": atoms / seconds, "threads": threads}


def size_table(by_size: list[dict[str, Any]]) -> Table:
    """Training steps/s (structures and atoms) per table size, relative to the first."""
    table = Table(title="GraphTable training by table size (seeded random samples of the store)")
    for column in ("structures", "mean sites", "structures/s", "atoms/s", "vs first size"):
        table.add_column(column, justify="right")
    for row in by_size:
        table.add_row(f"{row['n']:,}", f"{row['mean_sites']:.1f}", f"{row['train_per_s']:,.0f}",
                      f"{row['atoms_per_s']:,.0f}", f"{row['train_per_s'] / by_size[0]['train_per_s']:.2f}x")
    return table
