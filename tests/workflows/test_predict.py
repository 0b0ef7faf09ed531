"""``predict``: an ensemble of checkpoints on a source; every input a prediction or an error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from typer.testing import CliRunner

from hybridmat.cli import app
from hybridmat.config import parse_job
from hybridmat.data.writers import write_structure_table
from hybridmat.workflows.predict import errors_path, model_id
from hybridmat.workflows.train import run_train_job
from tests.conftest import perovskite
from tests.features.test_store import _records


def test_predict_cli_writes_mean_std_and_errors(tmp_path: Path) -> None:
    table = tmp_path / "train.parquet"
    write_structure_table(_records(30), table)
    job = {"data": {"source": str(table), "store": str(tmp_path / "store")}, "features": {"composition": "magpie"},
           "model": {"name": "cgcnn", "hyper": {"hidden": 8, "n_conv": 1}}, "ensemble": 2,
           "train": {"epochs": 2, "batch_size": 8, "device": "cpu", "num_threads": 1}, "output": str(tmp_path / "run")}
    run_train_job(parse_job(job), progress=False)
    checkpoints = sorted((tmp_path / "run").glob("member-*/best.pt"))
    assert len(checkpoints) == 2

    source = tmp_path / "new.jsonl"
    good = json.dumps(perovskite().as_dict())
    source.write_text("\n".join(json.dumps(row) for row in [
        {"id": "a", "structure": good}, {"id": "broken", "structure": "not a structure"}, {"id": "a", "structure": good},
    ]) + "\n")
    out = tmp_path / "pred.parquet"
    args = ["predict", str(source), "--out", str(out)] + sum([["--models", str(c)] for c in checkpoints], [])
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    predictions = pq.read_table(out).to_pylist()
    assert [p["id"] for p in predictions] == ["a"]
    assert set(predictions[0]) == {"id", "formula", "n_sites", "e_form_mean", "e_form_std", "model_id"}
    assert predictions[0]["e_form_std"] > 0 and np.isfinite(predictions[0]["e_form_mean"])
    assert predictions[0]["model_id"] == model_id(checkpoints)
    errors = pq.read_table(errors_path(out)).to_pylist()
    assert [(e["id"], e["stage"]) for e in errors] == [("broken", "read"), ("a", "duplicate")]


def test_export_writes_members_and_model_card(tmp_path: Path) -> None:
    from hybridmat.workflows.export import export_model

    table = tmp_path / "train.parquet"
    write_structure_table(_records(30), table)
    job = parse_job({"name": "card", "data": {"source": str(table), "store": str(tmp_path / "store")},
                     "features": {"composition": "magpie"}, "model": {"name": "cgcnn", "hyper": {"hidden": 8, "n_conv": 1}},
                     "ensemble": 2, "train": {"epochs": 1, "batch_size": 8, "device": "cpu", "num_threads": 1},
                     "output": str(tmp_path / "run")})
    run_train_job(job, progress=False)
    copied = export_model(job, tmp_path / "model", "hybridmat train job.yaml")
    assert [p.name for p in copied] == ["member-0.pt", "member-1.pt"]
    card = (tmp_path / "model" / "MODEL_CARD.md").read_text()
    assert "hybridmat train job.yaml" in card and "| e_form |" in card
