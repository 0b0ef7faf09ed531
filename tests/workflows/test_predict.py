"""``predict``: an ensemble of checkpoints on a source; every input a prediction or an error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from hybridmat.cli import app
from hybridmat.config import parse_job
from hybridmat.data.source_strings import open_source
from hybridmat.data.writers import write_structure_table
from hybridmat.training.ensemble import Ensemble
from hybridmat.workflows.predict import errors_path, model_id, predict_source
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
        {"id": "a", "structure": good}, {"id": "broken", "structure": "not a structure"},
        {"id": "a", "structure": good},
    ]) + "\n")
    out = tmp_path / "pred.parquet"
    args = ["predict", str(source), "--out", str(out)] + [arg for c in checkpoints for arg in ("--models", str(c))]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    predictions = pq.read_table(out).to_pylist()
    assert [p["id"] for p in predictions] == ["a"]
    assert set(predictions[0]) == {"id", "formula", "n_sites", "e_form_mean", "e_form_std", "model_id"}
    assert predictions[0]["e_form_std"] > 0 and np.isfinite(predictions[0]["e_form_mean"])
    assert predictions[0]["model_id"] == model_id(checkpoints)
    errors = pq.read_table(errors_path(out)).to_pylist()
    assert [(e["id"], e["stage"]) for e in errors] == [("broken", "read"), ("a", "duplicate")]


def _export_job(tmp_path: Path, name: str, model: dict, members: int, source: Path | None = None) -> Any:
    table = source or tmp_path / "train.parquet"
    if not table.exists():
        write_structure_table(_records(30), table)
    return parse_job({"name": name, "data": {"source": str(table), "store": str(tmp_path / f"store-{table.stem}")},
                      "features": {"composition": "magpie"}, "model": model, "ensemble": members,
                      "train": {"epochs": 1, "batch_size": 8, "device": "cpu", "num_threads": 1},
                      "output": str(tmp_path / name)})


def test_export_writes_members_and_model_card(tmp_path: Path) -> None:
    from hybridmat.workflows.export import export_model

    job = _export_job(tmp_path, "card", {"name": "cgcnn", "hyper": {"hidden": 8, "n_conv": 1}}, 2)
    run_train_job(job, progress=False, command="hybridmat train job.yaml")
    copied = export_model(job, tmp_path / "model")
    assert [p.name for p in copied] == ["member-0.pt", "member-1.pt"]
    card = (tmp_path / "model" / "MODEL_CARD.md").read_text()
    assert "hybridmat train job.yaml" in card and "| e_form |" in card and "CPU cores" in card
    assert "](validation_curves.png)" in card and (tmp_path / "model" / "validation_curves.png").stat().st_size > 0
    record = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert [m["seed"] for m in record["members"]] == [0, 1] and record["sizes"]["train"] > 0
    # seeds of one model are averaged equally: no weights are fitted
    assert record["weights"] is None and not (tmp_path / "model" / "ensemble.json").exists()
    assert "averaged equally" in card


def test_export_joins_the_members_of_several_jobs_measured_on_the_same_data(tmp_path: Path) -> None:
    from hybridmat.config import JobFileError
    from hybridmat.workflows.export import export_model

    graph = _export_job(tmp_path, "graph", {"name": "alignn", "hyper": {"hidden": 8, "alignn_layers": 1,
                                                                          "gcn_layers": 1}}, 2)
    hybrid = _export_job(tmp_path, "hybrid", {"name": "early_fusion", "hyper": {"hidden": 8, "n_conv": 1}}, 1)
    for job in (graph, hybrid):
        run_train_job(job, progress=False, command=f"hybridmat train {job.name}.yaml")
    copied = export_model([graph, hybrid], tmp_path / "model")
    assert len(copied) == 3
    record = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert [(m["model"], m["seed"]) for m in record["members"]] == [("alignn", 0), ("alignn", 1), ("early_fusion", 0)]
    ensemble = Ensemble.from_checkpoints(copied)
    test_mae = record["test"][0]["mae"]
    assert np.isfinite(test_mae) and all(np.isfinite(m["test"][0]["mae"]) for m in record["members"])
    beats = all(test_mae < m["test"][0]["mae"] for m in record["members"])
    assert record["ensemble_beats_every_member"] == {"e_form": beats} and len(ensemble.members) == 3
    card = (tmp_path / "model" / "MODEL_CARD.md").read_text()
    assert "2 × `alignn`" in card and "1 × `early_fusion`" in card and "hybridmat train hybrid.yaml" in card
    # the mixed ensemble (line graphs for its ALIGNN members only) predicts a source as the shipped one does
    counts = predict_source(open_source(str(tmp_path / "train.parquet")), copied, tmp_path / "pred.parquet")
    assert counts == {"inputs": 30, "predicted": 30, "errors": 0}

    elsewhere = tmp_path / "other.parquet"
    write_structure_table(_records(20), elsewhere)
    other = _export_job(tmp_path, "other", {"name": "cgcnn", "hyper": {"hidden": 8, "n_conv": 1}}, 1, elsewhere)
    with pytest.raises(JobFileError, match="differ in `data`"):
        export_model([graph, other], tmp_path / "refused")


def test_an_ensemble_of_different_models_is_weighted_per_target_as_fitted_on_validation(tmp_path: Path) -> None:
    from hybridmat.training.stacking import MemberWeights
    from hybridmat.workflows.calibrate import calibrate_model
    from hybridmat.workflows.export import export_model
    from hybridmat.workflows.predict import load_predictor, model_files
    from hybridmat.workflows.train import job_split_data

    graph = _export_job(tmp_path, "graph", {"name": "cgcnn", "hyper": {"hidden": 8, "n_conv": 1}}, 1)
    hybrid = _export_job(tmp_path, "hybrid", {"name": "early_fusion", "hyper": {"hidden": 8, "n_conv": 1}}, 2)
    for job in (graph, hybrid):
        run_train_job(job, progress=False)
    model = tmp_path / "model"
    export_model([graph, hybrid], model)
    record = json.loads((model / "metrics.json").read_text())
    weights = MemberWeights.from_dict(record["weights"])
    assert weights.fitted_on.endswith("/val") and sum(weights.weights["e_form"]) == pytest.approx(1.0)
    assert [m["weight"]["e_form"] for m in record["members"]] == list(weights.weights["e_form"])
    assert "combined with per-target weights" in (model / "MODEL_CARD.md").read_text()

    predictor = load_predictor(model)  # the one loader applies the weights
    assert predictor.ensemble.weights == weights
    test = job_split_data(graph, progress=False).test
    members, y = predictor.ensemble.member_predictions(test)[:, :, 0], test.targets.numpy()[:, 0]
    mean = predictor.ensemble.predict(test)[0][:, 0]
    np.testing.assert_allclose(mean, np.array(weights.weights["e_form"]) @ members, rtol=1e-5, atol=1e-6)
    assert record["test"][0]["mae"] == pytest.approx(np.mean(np.abs(mean - y)), rel=1e-5)
    assert record["equal_weights"]["test"][0]["mae"] == pytest.approx(np.mean(np.abs(members.mean(0) - y)), rel=1e-5)
    files = model_files(model)
    assert files.stale is None and files.members_id != files.checkpoints_id  # a calibration is fitted on the weights

    fitted_elsewhere = json.loads((model / "ensemble.json").read_text()) | {"checkpoints_id": "other-members"}
    (model / "ensemble.json").write_text(json.dumps(fitted_elsewhere))
    stale = model_files(model)
    assert stale.weights is None and stale.stale.startswith("equal weights")
    assert load_predictor(stale).ensemble.weights is None
    with pytest.raises(ValueError, match="fitted for other members"):
        calibrate_model(model, tmp_path / "train.parquet")
    export_model(hybrid, model)  # one model's seeds: equal weights, the old weights go
    assert not (model / "ensemble.json").exists() and model_files(model).stale is None


def _calibrate_by_hand(directory: Path, members_id: str, n_features: int) -> None:
    """calibration.json + domain.npz for ``directory`` as `hybridmat calibrate` writes them (synthetic fit)."""
    import hashlib
    import io

    from hybridmat.training.calibration import EnsembleCalibration, fit_target_calibration
    from hybridmat.training.domain import fit_domain_model

    rng = np.random.default_rng(0)
    domain = fit_domain_model(rng.normal(size=(300, n_features)), "magpie", n_components=4)
    scores = domain.score(rng.normal(size=(400, n_features)))
    domain = domain.with_threshold(scores, 0.5)
    mean, std = rng.normal(size=400), rng.uniform(0.1, 0.2, 400)
    calibration = EnsembleCalibration((fit_target_calibration("e_form", mean + 3 * std * rng.normal(size=400), mean,
                                                              std, scores, (domain.threshold,)),), fitted_on="test")
    buffer = io.BytesIO()
    np.savez(buffer, **domain.to_dict())
    (directory / "domain.npz").write_bytes(buffer.getvalue())
    (directory / "calibration.json").write_text(json.dumps({
        "members_id": members_id, "domain_sha256": hashlib.sha256(buffer.getvalue()).hexdigest(),
        "calibration": calibration.to_dict()}))


def test_calibration_beside_the_members_adds_intervals_and_domain_and_stale_ones_are_refused(tmp_path: Path) -> None:
    from hybridmat.workflows.predict import load_predictor, model_files

    table = tmp_path / "train.parquet"
    write_structure_table(_records(30), table)
    job = {"data": {"source": str(table), "store": str(tmp_path / "store"), "targets": ["e_form"]},
           "features": {"composition": "magpie"}, "model": {"name": "cgcnn", "hyper": {"hidden": 8, "n_conv": 1}},
           "ensemble": 2, "train": {"epochs": 1, "batch_size": 8, "device": "cpu", "num_threads": 1},
           "output": str(tmp_path / "run")}
    run_train_job(parse_job(job), progress=False)
    run = tmp_path / "run"
    uncalibrated = model_files(run)
    assert uncalibrated.calibration is None and uncalibrated.model_id == model_id(run)
    _calibrate_by_hand(run, uncalibrated.members_id, n_features=132)
    files = model_files(run)
    assert files.calibration is not None and files.stale is None and files.model_id != uncalibrated.model_id
    assert model_files(sorted(run.glob("member-*/best.pt"))).calibration == files.calibration

    source = tmp_path / "new.jsonl"
    source.write_text(json.dumps({"id": "p", "structure": json.dumps(perovskite().as_dict())}) + "\n")
    out = tmp_path / "pred.parquet"
    result = CliRunner().invoke(app, ["predict", str(source), "--out", str(out), "--models", str(run)])
    assert result.exit_code == 0, result.output
    row = pq.read_table(out).to_pylist()[0]
    assert list(row) == ["id", "formula", "n_sites", "e_form_mean", "e_form_std", "e_form_lo", "e_form_hi",
                         "domain_score", "in_domain", "model_id"]
    assert row["e_form_lo"] < row["e_form_mean"] < row["e_form_hi"] and row["model_id"] == files.model_id
    predictor = load_predictor(files)
    assert predictor.calibration is not None and predictor.domain is not None

    _calibrate_by_hand(run, "another-model", n_features=132)
    stale = model_files(run)
    assert stale.calibration is None and "fitted for other members" in stale.stale
    result = CliRunner().invoke(app, ["predict", str(source), "--out", str(out), "--models", str(run)])
    assert "uncalibrated" in result.output and "e_form_lo" not in pq.read_schema(out).names
