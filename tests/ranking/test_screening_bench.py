"""``bench screening`` on a slice of the real held-out split (needs ../shared/data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from hybridmat.bench.discovery import bench_screening_command
from tests.conftest import shared_file


@pytest.mark.integration
def test_screening_benchmark_on_200_test_materials(tmp_path: Path) -> None:
    data = shared_file("mp_cgcnn36k", "mp_cgcnn36k.parquet")
    app = typer.Typer()
    app.callback()(lambda: None)
    app.command("screening")(bench_screening_command)
    args = ["screening", "--limit", "200", "--data", str(data), "--out", str(tmp_path),
            "--json", str(tmp_path / "s.json")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "DAF" in result.output and "precision" in result.output
    figures = json.loads((tmp_path / "s.json").read_text())
    assert figures["n"] == 200 == figures["tp"] + figures["fp"] + figures["tn"] + figures["fn"]
    assert figures["source"].endswith("?split=full/test&limit=200")
    assert 0 < figures["prevalence"] < 1 and figures["daf"] > 1
    assert figures["mae"] < 0.2  # the model card reports 0.064 eV/atom e_form MAE on the whole test split
