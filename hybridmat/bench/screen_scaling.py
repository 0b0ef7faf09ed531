"""``hybridmat bench screen``: end-to-end screening throughput and whether memory stays flat.

Each size runs the real command (``hybridmat screen ... --quiet``) in a fresh process on the embedded
local Ray, with generated candidates and the shipped ensemble. A sampler adds up the proportional set
size (PSS: shared pages such as the object store counted once across processes) of that process and
all its descendants (Ray's GCS, raylet and workers) every quarter second; the peak is reported. The
figure of merit is the ratio of peaks between the largest and the smallest run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import psutil
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from hybridmat.data.candidates import DEFAULT_PROTOTYPES, DEMO_ELEMENTS
from hybridmat.features.store import read_manifest

TARGET_GROWTH = 1.3
SAMPLE_S = 0.25


def candidates_spec(n: int, seed: int = 0) -> str:
    """``n`` unfiltered substitutions of the demo elements into the default prototypes (a pool of ~300k)."""
    return (f"candidates:elements={','.join(DEMO_ELEMENTS)}&prototypes={','.join(DEFAULT_PROTOTYPES)}"
            f"&n={n}&seed={seed}&charge_balanced=false")


def _tree_pss(process: psutil.Process) -> int:
    """PSS in bytes of ``process`` and its descendants (processes that vanish meanwhile are skipped)."""
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def run_screen_process(spec: str, out: Path, extra: Sequence[str] = ()) -> dict[str, float]:
    """Run ``hybridmat screen`` on ``spec`` in a child process; wall time, peak tree PSS and counts."""
    command = [sys.executable, "-m", "hybridmat.cli", "screen", spec, "--out", str(out), "--quiet", *extra]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    process, peak = psutil.Process(child.pid), 0
    while child.poll() is None:
        try:
            peak = max(peak, _tree_pss(process))
        except psutil.NoSuchProcess:
            break
        time.sleep(SAMPLE_S)
    output = child.communicate()[0]
    seconds = time.perf_counter() - started
    if child.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` failed ({child.returncode}):\n{output[-3000:]}")
    counts = (read_manifest(out) or {})["counts"]
    rows = sum(pq.ParquetFile(path).metadata.num_rows for path in (out / "shards").glob("part-?????.parquet"))
    return {"inputs": counts["inputs"], "rows": rows, "errors": counts["errors"], "seconds": seconds,
            "peak_pss_mib": peak / 2**20}


def results_table(runs: dict[int, dict[str, float]], command: str) -> Table:
    """One row per size and the peak-memory growth between the smallest and the largest."""
    table = Table(title=f"Streaming screening, shipped ensemble, local Ray ({command})")
    for column in ("candidates", "predictions", "errors", "seconds", "candidates/s", "peak PSS (MiB)"):
        table.add_column(column, justify="right")
    for n, run in runs.items():
        table.add_row(f"{n:,}", f"{run['rows']:,.0f}", f"{run['errors']:,.0f}", f"{run['seconds']:.0f}",
                      f"{run['inputs'] / run['seconds']:,.0f}", f"{run['peak_pss_mib']:,.0f}")
    small, large = runs[min(runs)], runs[max(runs)]
    growth = large["peak_pss_mib"] / small["peak_pss_mib"]
    table.caption = (f"peak memory {max(runs):,} vs {min(runs):,} candidates: {growth:.2f}× "
                     f"(target < {TARGET_GROWTH}×); seconds include Ray and actor start-up")
    return table


def run_screen_benchmark(sizes: Sequence[int], console: Console, command: str,
                         json_path: Path | None = None) -> dict[int, dict[str, float]]:
    """Screen each size in a fresh process, print the table, optionally write JSON."""
    runs = {}
    with tempfile.TemporaryDirectory() as scratch:
        for n in sorted(sizes):
            runs[n] = run_screen_process(candidates_spec(n), Path(scratch) / f"screen-{n}")
            console.log(f"{n:,} candidates: {runs[n]['seconds']:.0f} s, peak {runs[n]['peak_pss_mib']:,.0f} MiB")
    console.print(results_table(runs, command))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({"command": command, "runs": runs}, indent=2))
    return runs
