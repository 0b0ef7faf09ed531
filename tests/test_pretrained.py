"""The shipped ensemble loads on a fresh machine (weights_only) and predicts both targets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from hybridmat.data.records import StructureRecord
from hybridmat.data.source_strings import open_source
from hybridmat.data.writers import write_structure_table
from hybridmat.workflows.predict import PRETRAINED_DIR, model_files, predict_source, pretrained_checkpoints
from tests.conftest import perovskite, rocksalt


def test_pretrained_checkpoints_are_small_and_load_weights_only() -> None:
    paths = pretrained_checkpoints()
    assert len(paths) >= 2
    assert sum(p.stat().st_size for p in paths) <= 10 * 1024 * 1024
    for path in paths:
        state = torch.load(path, weights_only=True)
        assert state["target_names"] == ["e_form", "band_gap"]
    card = (PRETRAINED_DIR / "MODEL_CARD.md").read_text()
    assert "hybridmat train jobs/pretrained.yaml" in card
    assert json.loads((PRETRAINED_DIR / "metrics.json").read_text())["sizes"]["train"] == 29392


def test_pretrained_ensemble_predicts_plausible_values(tmp_path: Path) -> None:
    source = tmp_path / "in.parquet"
    write_structure_table([StructureRecord("nacl", rocksalt()), StructureRecord("srtio3", perovskite())], source)
    counts = predict_source(open_source(str(source)), pretrained_checkpoints(), tmp_path / "pred.parquet")
    assert counts == {"inputs": 2, "predicted": 2, "errors": 0}
    rows = {r["id"]: r for r in pq.read_table(tmp_path / "pred.parquet").to_pylist()}
    # DFT (MP): NaCl e_form ≈ -2.1 eV/atom, gap ≈ 5 eV; SrTiO3 e_form ≈ -3.5 eV/atom, gap ≈ 1.8 eV.
    assert -3.0 < rows["nacl"]["e_form_mean"] < -1.2 and rows["nacl"]["band_gap_mean"] > 2.5
    assert -4.3 < rows["srtio3"]["e_form_mean"] < -2.7
    assert all(np.isfinite(r["e_form_std"]) and r["e_form_std"] >= 0 for r in rows.values())
    for row in rows.values():  # the shipped ensemble is calibrated: 90 % intervals and a domain flag
        for target in ("e_form", "band_gap"):
            assert row[f"{target}_lo"] < row[f"{target}_mean"] < row[f"{target}_hi"]
        assert row["in_domain"] is True and row["domain_score"] >= 0


def test_pretrained_calibration_belongs_to_these_members_and_fits_in_10_mb() -> None:
    files = model_files()
    assert files.stale is None and files.calibration is not None and files.domain is not None
    record = json.loads(files.calibration)
    assert record["members_id"] == files.members_id and record["calibration"]["fitted_on"].endswith("full/val")
    assert {t["target"] for t in record["calibration"]["targets"]} == {"e_form", "band_gap"}
    assert sum(p.stat().st_size for p in PRETRAINED_DIR.iterdir()) < 10 * 1024 * 1024
    # early fusion and ALIGNN are different models: combined with the weights export fitted on full/val
    assert files.weights is not None and record["members_id"] != files.checkpoints_id
    metrics = json.loads((PRETRAINED_DIR / "metrics.json").read_text())
    assert metrics["weights"] == {k: v for k, v in json.loads(files.weights).items() if k != "checkpoints_id"}
    assert "## Calibrated uncertainty and domain" in (PRETRAINED_DIR / "MODEL_CARD.md").read_text()
