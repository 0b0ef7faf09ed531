"""Locating and sampling the shared real datasets used by benchmarks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa

#: Where the shared datasets live: $HYBRIDMAT_SHARED_DATA, else ../shared/data beside the checkout.
SHARED_DATA = Path(os.environ.get("HYBRIDMAT_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


def default_mp_parquet() -> Path:
    """The Materials Project dataset (``mp_cgcnn36k.parquet``), with a clear error when it is absent."""
    path = SHARED_DATA / "mp_cgcnn36k" / "mp_cgcnn36k.parquet"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: put the shared data beside the checkout (../shared/data) "
            "or set HYBRIDMAT_SHARED_DATA, or pass --data"
        )
    return path


def sample_rows(table: pa.Table, n: int, seed: int = 0) -> dict[str, list]:
    """A seeded random sample of ``n`` rows (all rows if fewer), in file order, as columns."""
    n = min(n, table.num_rows)
    chosen = np.sort(np.random.default_rng(seed).choice(table.num_rows, size=n, replace=False))
    return table.take(pa.array(chosen)).to_pydict()
