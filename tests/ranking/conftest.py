"""A hand-made predictions table, written as a `hybridmat predict` file or as a screener directory."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

#: id, formula, e_form mean/std, band_gap mean/std. Binary-exact values, so lcb:e_form ties exactly:
#: mp-b, mp-c and mp-e all have e_form_mean - e_form_std == -1.25 (tie broken by id).
ROWS = [
    ("mp-a", "Li2O", -2.0, 0.05, 5.0, 0.25),
    ("mp-b", "LiO2", -0.75, 0.5, 2.5, 0.25),
    ("mp-c", "Li2O2", -1.0, 0.25, 2.0, 0.125),
    ("mp-d", "Li", 0.0, 0.0, -0.0625, 0.0625),
    ("mp-e", "Li2O3", -1.25, 0.0, 1.5, 0.25),
    ("mp-f", "LiO3", -0.625, 0.5, 1.0, 0.5),
    ("mp-g", "O2", -0.125, 0.0625, 3.5, 0.25),
]


def predictions_table(rows: list[tuple] = ROWS) -> pa.Table:
    """Columns as `hybridmat predict` writes them."""
    ids, formulas, e_mean, e_std, g_mean, g_std = (list(column) for column in zip(*rows))
    return pa.table({
        "id": pa.array(ids, pa.string()), "formula": pa.array(formulas, pa.string()),
        "n_sites": pa.array([4] * len(rows), pa.int32()),
        "e_form_mean": e_mean, "e_form_std": e_std, "band_gap_mean": g_mean, "band_gap_std": g_std,
        "model_id": pa.array(["test"] * len(rows), pa.string()),
    })


def write_screen_directory(table: pa.Table, directory: Path, shard_rows: int = 3) -> Path:
    """The streaming screener's layout: shards (+ a per-shard errors file), errors.parquet, manifest.json."""
    shards = directory / "shards"
    shards.mkdir(parents=True)
    table = table.add_column(0, "index", pa.array(range(table.num_rows), pa.int64()))
    errors = pa.table({"index": pa.array([99], pa.int64()), "id": ["broken"], "stage": ["read"], "reason": ["bad"]})
    for n, start in enumerate(range(0, table.num_rows, shard_rows)):
        pq.write_table(table.slice(start, shard_rows), shards / f"part-{n:05d}.parquet")
        pq.write_table(errors, shards / f"part-{n:05d}.errors.parquet")
    pq.write_table(errors, directory / "errors.parquet")
    (directory / "manifest.json").write_text(json.dumps({"shards": n + 1}))
    return directory


@pytest.fixture(params=["predict-file", "screen-directory"])
def predictions_path(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """The hand-made predictions in both input shapes."""
    if request.param == "predict-file":
        path = tmp_path / "predictions.parquet"
        pq.write_table(predictions_table(), path)
        return path
    return write_screen_directory(predictions_table(), tmp_path / "screen")
