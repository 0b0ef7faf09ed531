"""The Matbench protocol on a task served from 127.0.0.1: fold training, task.record, matbench's file."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from matbench.bench import MatbenchBenchmark

from hybridmat.config import parse_job
from hybridmat.workflows.matbench import errors_file, run_matbench
from tests.data.test_matbench_source import cache, served  # noqa: F401  (fixtures: local server + cache)


def test_matbench_folds_are_recorded_and_written(cache: Path, tmp_path: Path) -> None:  # noqa: F811
    job = parse_job({"data": {"source": "matbench:matbench_jdft2d"}, "features": {"composition": "magpie"},
                     "model": {"name": "rf", "hyper": {"n_estimators": 5, "n_jobs": 1}}, "output": str(tmp_path)})
    out = tmp_path / "matbench_jdft2d.json"
    scores = run_matbench(job, "matbench_jdft2d", None, out)
    assert [s["fold"] for s in scores] == [0, 1, 2, 3, 4]
    assert all(s["n_test"] in (127, 128) and s["fallback_predictions"] == 0 for s in scores)
    reloaded = MatbenchBenchmark.from_file(str(out))
    task = reloaded.tasks_map["matbench_jdft2d"]
    assert all(task.is_recorded.values())
    assert abs(task.results.fold_0.scores.mae - scores[0]["mae"]) < 1e-9
    assert pq.read_table(errors_file(out)).num_rows == 0
