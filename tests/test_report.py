"""Tables and figures are drawn from result rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hybridmat.report import comparison_figure, markdown_table, parity_figure

RESULTS = [
    {"model": "rf", "category": "composition", "target": "e_form", "mae": 0.12, "rmse": 0.2, "r2": 0.9,
     "train_seconds": 5.0, "parameters": 0},
    {"model": "cgcnn", "category": "graph", "target": "e_form", "mae": 0.08, "rmse": 0.12, "r2": 0.95,
     "train_seconds": 300.0, "parameters": 120_000},
    {"model": "early_fusion", "category": "hybrid", "target": "e_form", "mae": 0.07, "rmse": 0.11, "r2": 0.96,
     "train_seconds": 320.0, "parameters": 140_000},
]


def test_markdown_table_sorted_by_mae() -> None:
    lines = markdown_table(RESULTS).splitlines()
    assert lines[2].startswith("| early_fusion") and lines[-1].startswith("| rf")
    assert "0.0700" in lines[2]


def test_figures_are_png(tmp_path: Path) -> None:
    figure = comparison_figure(RESULTS, tmp_path / "comparison.png", "e_form")
    rng = np.random.default_rng(0)
    truth = rng.normal(size=50)
    parity = parity_figure({"rf": (truth, truth + 0.1), "cgcnn": (truth, truth - 0.05)}, tmp_path / "parity.png", "e_form")
    for path in (figure, parity):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_command_redraws_from_benchmark_json(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from hybridmat.cli import app

    results = tmp_path / "bench.json"
    results.write_text(json.dumps({"results": RESULTS}))
    outcome = CliRunner().invoke(app, ["report", str(results), "--out", str(tmp_path / "figs")])
    assert outcome.exit_code == 0, outcome.output
    assert (tmp_path / "figs" / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert "| early_fusion |" in (tmp_path / "figs" / "table.md").read_text()
