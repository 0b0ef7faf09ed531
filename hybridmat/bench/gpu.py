"""``hybridmat bench gpu``: training and inference throughput of CGCNN, early fusion and ALIGNN on an
accelerator, in full precision and with AMP, measured in one run (the AMP speed-up is their ratio).

Data: a seeded random sample of ``n`` rows of a feature store of real structures (``--store``, e.g. a featurized
``mp_cgcnn36k``; never its first rows, see :func:`~hybridmat.bench.data.sample_table`), so the graphs have real
sizes. Throughput excludes the first epoch (CUDA context, allocator warm-up).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from hybridmat.bench.data import sample_table
from hybridmat.features.dataset import CrystalDataset
from hybridmat.features.store import FeatureStore
from hybridmat.models.base import build_model, model_class
from hybridmat.training.checkpoint import predict_table
from hybridmat.training.collate import GraphTable
from hybridmat.training.trainer import TrainConfig, train_model
from hybridmat.workflows.fitting import write_json

MODELS = {"cgcnn": {}, "early_fusion": {}, "alignn": {}}


def _throughput(name: str, dataset: CrystalDataset, device: str, amp: bool, epochs: int,
                batch_size: int) -> dict[str, float]:
    """Training structures/s (mean of epochs after the first) and inference structures/s."""
    torch.manual_seed(0)
    model = build_model(name, n_targets=1, composition_dim=dataset.composition.shape[1], **MODELS[name])
    config = TrainConfig(epochs=epochs, batch_size=batch_size, device=device, amp=amp, patience=None,
                         deterministic=False)
    result = train_model(model, dataset, None, config)
    rates = [h["structures_per_s"] for h in result.history[1:]] or [result.history[0]["structures_per_s"]]
    table = GraphTable.from_dataset(dataset, line_graph=model.needs_line_graph)
    amp_dtype = torch.bfloat16 if amp and device == "cuda" else None
    predict_table(result.model, result.normalizer, table, 512, amp_dtype)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    predict_table(result.model, result.normalizer, table, 512, amp_dtype)
    if device == "cuda":
        torch.cuda.synchronize()
    return {"train_per_s": sum(rates) / len(rates), "infer_per_s": len(dataset) / (time.perf_counter() - started)}


def run_gpu_benchmark(store: Path, n: int, epochs: int, device: str, console: Console, command: str,
                      json_path: Path | None) -> dict[str, Any]:
    """Measure every model in fp32 and AMP on a seeded random ``n`` structures of ``store``; print the table."""
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("no CUDA device visible to torch; run on a GPU machine or pass --device cpu")
    dataset = CrystalDataset.from_table(sample_table(FeatureStore(store).read_table(), n), ["e_form"])
    rows = []
    for name in MODELS:
        batch_size = 64 if model_class(name).needs_line_graph else 256  # line graphs: ~3x the edges
        fp32 = _throughput(name, dataset, device, False, epochs, batch_size)
        amp = _throughput(name, dataset, device, True, epochs, batch_size)
        rows.append({"model": name, "batch_size": batch_size, "fp32": fp32, "amp": amp,
                     "amp_train_speedup": amp["train_per_s"] / fp32["train_per_s"],
                     "amp_infer_speedup": amp["infer_per_s"] / fp32["infer_per_s"]})
    device_name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    table = Table(title=f"{device_name}: {len(dataset)} MP structures, {epochs} epochs (`{command}`)")
    for column in ("model", "train fp32 /s", "train AMP /s", "AMP speed-up",
                   "infer fp32 /s", "infer AMP /s", "AMP speed-up"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in rows:
        table.add_row(row["model"], f"{row['fp32']['train_per_s']:,.0f}", f"{row['amp']['train_per_s']:,.0f}",
                      f"{row['amp_train_speedup']:.2f}x", f"{row['fp32']['infer_per_s']:,.0f}",
                      f"{row['amp']['infer_per_s']:,.0f}", f"{row['amp_infer_speedup']:.2f}x")
    console.print(table)
    payload = {"command": command, "device": device_name, "n": len(dataset), "epochs": epochs, "rows": rows}
    if json_path:
        write_json(json_path, payload)
    return payload
