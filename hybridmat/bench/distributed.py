"""``hybridmat bench distributed``: featurization on Ray actors against the single-process path.

One run, the same real structures, three timings: the single-process store writer, then 1 and 2 Ray
workers on the embedded local cluster (started once beforehand; its start-up is reported apart). Each
Ray timing is the whole ``featurize_with_ray`` call, actor start-up included. The ratios are the
figures of merit; absolute rates depend on the machine and are printed for context only.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hybridmat.bench.data import default_mp_parquet
from hybridmat.data.source_strings import open_source
from hybridmat.features.pipeline import featurize_to_store

TARGET_SPEEDUP, TARGET_OVERHEAD = 1.6, 0.15


def measure(spec: str, shard_size: int, worker_counts: tuple[int, ...] = (1, 2)) -> dict[str, float]:
    """Seconds for the single-process path and for each worker count (Ray started once, timed apart)."""
    import ray

    from hybridmat.distributed.featurize import featurize_with_ray
    from hybridmat.distributed.runtime import ray_session

    source = open_source(spec)
    figures: dict[str, float] = {"inputs": float(source.count() or 0)}
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        featurize_to_store(source, Path(scratch) / "single", spec=spec, shard_size=shard_size, progress=False)
        figures["single_s"] = time.perf_counter() - started
        started = time.perf_counter()
        with ray_session(num_cpus=max(worker_counts)):
            ray.get(ray.remote(lambda: None).remote())
            figures["ray_start_s"] = time.perf_counter() - started
            for workers in worker_counts:
                started = time.perf_counter()
                featurize_with_ray(source, Path(scratch) / f"ray{workers}", spec=spec, workers=workers,
                                   shard_size=shard_size, progress=False)
                figures[f"workers_{workers}_s"] = time.perf_counter() - started
    return figures


def results_table(figures: dict[str, float], command: str) -> Table:
    """Rates and the two ratios the issue sets targets for."""
    n = figures["inputs"]
    single, one, two = figures["single_s"], figures["workers_1_s"], figures["workers_2_s"]
    table = Table(title=f"Distributed featurization, {n:,.0f} mp_cgcnn36k structures ({command})")
    for column in ("path", "seconds", "structures/s", "ratio", "target"):
        table.add_column(column, justify="left" if column in ("path", "target") else "right")
    table.add_row("single process", f"{single:.1f}", f"{n / single:,.0f}", "", "")
    table.add_row("Ray, 1 worker", f"{one:.1f}", f"{n / one:,.0f}", f"overhead {one / single - 1:+.0%}",
                  f"≤ +{TARGET_OVERHEAD:.0%}")
    table.add_row("Ray, 2 workers", f"{two:.1f}", f"{n / two:,.0f}", f"{one / two:.2f}× vs 1 worker",
                  f"≥ {TARGET_SPEEDUP}×")
    table.caption = f"Ray start-up (once per session, not in the rows): {figures['ray_start_s']:.1f} s"
    return table


def run_distributed_benchmark(n: int, shard_size: int, json_path: Path | None, data_path: Path | None,
                              console: Console, command: str) -> dict[str, float]:
    """Measure, print the table, optionally write the figures as JSON."""
    spec = f"{data_path or default_mp_parquet()}?limit={n}"
    figures = measure(spec, shard_size)
    console.print(results_table(figures, command))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({"command": command, "shard_size": shard_size, **figures}, indent=2))
    return figures
