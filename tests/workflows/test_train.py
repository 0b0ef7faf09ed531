"""A training job end to end on a tiny hand-made dataset: featurize, split, fit, evaluate, artefacts."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hybridmat.config import parse_job
from hybridmat.data.writers import write_structure_table
from hybridmat.workflows.train import run_train_job
from tests.features.test_store import _records


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tiny.parquet"
    write_structure_table(_records(40), path)
    return path


def _job(table: Path, tmp_path: Path, model: dict) -> dict:
    return {
        "name": "tiny", "data": {"source": str(table), "targets": ["e_form"], "store": str(tmp_path / "store")},
        "features": {"composition": "magpie"}, "model": model,
        "train": {"epochs": 3, "batch_size": 8, "patience": 5, "device": "cpu", "num_threads": 1},
        "output": str(tmp_path / "out"),
    }


def test_cgcnn_job_writes_metrics_predictions_and_checkpoint(table: Path, tmp_path: Path) -> None:
    result = run_train_job(parse_job(_job(table, tmp_path, {"name": "cgcnn", "hyper": {"hidden": 16, "n_conv": 1}})),
                           progress=False)
    assert [r["target"] for r in result.rows] == ["e_form"]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["sizes"] == {"train": 32, "val": 4, "test": 4}
    predictions = pq.read_table(tmp_path / "out" / "predictions_test.parquet")
    assert predictions.column_names == ["id", "formula", "e_form", "e_form_mean", "e_form_std"]
    assert (tmp_path / "out" / "member-0" / "best.pt").exists()
    assert (tmp_path / "out" / "parity_e_form.png").exists()


def test_late_fusion_job_fits_alpha_on_validation(table: Path, tmp_path: Path) -> None:
    job = _job(table, tmp_path, {"name": "late_fusion", "hyper": {"rf": {"n_estimators": 20},
                                                                  "graph_hyper": {"hidden": 16, "n_conv": 1}}})
    result = run_train_job(parse_job(job), progress=False)
    alpha = result.fitted.details["fusion"]["alpha"]
    assert len(alpha) == 1 and 0.0 <= alpha[0] <= 1.0
    assert (tmp_path / "out" / "rf" / "rf.skops").exists() and not (tmp_path / "out" / "rf" / "rf.joblib").exists()


def test_evaluate_reloads_trained_artefacts(table: Path, tmp_path: Path) -> None:
    from hybridmat.workflows.fitting import evaluate
    from hybridmat.workflows.train import job_split_data, load_fitted

    job = parse_job(_job(table, tmp_path, {"name": "late_fusion", "hyper": {"rf": {"n_estimators": 10},
                                                                           "graph_hyper": {"hidden": 8, "n_conv": 1}}}))
    trained = run_train_job(job, progress=False)
    reloaded, _, _ = evaluate(load_fitted("late_fusion", Path(job.output)), job_split_data(job, progress=False).test)
    assert reloaded[0]["mae"] == pytest.approx(trained.rows[0]["mae"], rel=1e-6)
