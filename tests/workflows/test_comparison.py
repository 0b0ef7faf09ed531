"""Tables and figures are drawn from result rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hybridmat.workflows.comparison import comparison_figure, markdown_table, parity_figure

RESULTS = [
    {"model": "rf", "category": "composition", "target": "e_form", "mae": 0.12, "rmse": 0.2, "r2": 0.9,
     "train_seconds": 5.0, "parameters": 0},
    {"model": "cgcnn", "category": "graph", "target": "e_form", "mae": 0.08, "rmse": 0.12, "r2": 0.95,
     "train_seconds": 300.0, "parameters": 120_000},
    {"model": "early_fusion", "category": "hybrid", "target": "e_form", "mae": 0.07, "rmse": 0.11, "r2": 0.96,
     "train_seconds": 320.0, "parameters": 140_000},
]

NEW_MODELS = [  # graph rows like cgcnn's
    {**RESULTS[1], "model": "alignn_simple", "mae": 0.095, "train_seconds": 600.0},
    {**RESULTS[1], "model": "multitask_gat", "mae": 0.11, "train_seconds": 280.0},
    {**RESULTS[1], "model": "multitask_gat", "target": "band_gap", "mae": 0.45},
]
#: A hand-written row without category, RMSE or parameter count.
UNCATEGORISED = {"model": "hand_made", "target": "e_form", "mae": 0.1, "r2": 0.9, "train_seconds": 50.0}


def test_markdown_table_sorted_by_mae() -> None:
    lines = markdown_table(RESULTS).splitlines()
    assert lines[2].startswith("| early_fusion") and lines[-1].startswith("| rf")
    assert "0.0700" in lines[2]


def test_figures_are_png(tmp_path: Path) -> None:
    figure = comparison_figure(RESULTS, tmp_path / "comparison.png", "e_form")
    rng = np.random.default_rng(0)
    truth = rng.normal(size=50)
    parity = parity_figure({"rf": (truth, truth + 0.1), "cgcnn": (truth, truth - 0.05)},
                           tmp_path / "parity.png", "e_form")
    for path in (figure, parity):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_command_redraws_from_benchmark_json(tmp_path: Path) -> None:
    """Every model of a small hand-made bench JSON (the new ones, a band_gap row, a row without category or
    RMSE) reaches the table; the two-panel figure is a PNG."""
    import json

    from typer.testing import CliRunner

    from hybridmat.cli import app

    rows = [*RESULTS, *NEW_MODELS, UNCATEGORISED]
    results = tmp_path / "bench.json"
    results.write_text(json.dumps({"results": rows}))
    outcome = CliRunner().invoke(app, ["report", str(results), "--out", str(tmp_path / "figs")])
    assert outcome.exit_code == 0, outcome.output
    assert (tmp_path / "figs" / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    table = (tmp_path / "figs" / "table.md").read_text()
    for row in rows:
        assert f"| {row['model']} |" in table
    assert "| alignn_simple | graph | e_form | 0.0950 |" in table


def test_figure_draws_every_row_whatever_its_category(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A row without a known category still gets a point in the scatter (grey, labelled "other")."""
    import matplotlib.axes

    drawn: list[str] = []
    scatter = matplotlib.axes.Axes.scatter

    def recording_scatter(self: matplotlib.axes.Axes, *args: Any, **kwargs: Any) -> Any:
        drawn.append(kwargs.get("label"))
        return scatter(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "scatter", recording_scatter)
    rows = [*RESULTS, *NEW_MODELS, UNCATEGORISED]
    comparison_figure(rows, tmp_path / "comparison.png", "e_form")
    assert drawn == ["composition", "graph", "hybrid", "other"]


def test_benchmark_covers_every_registered_model() -> None:
    """`bench models` (and so `report` on its JSON) includes every registered model."""
    import hybridmat.models  # noqa: F401  (registers the built-in models)
    from hybridmat.bench.models import MODEL_ORDER, PLANS
    from hybridmat.models.base import MODEL_REGISTRY, is_torch_model

    built_in = {name for name, cls in MODEL_REGISTRY.items() if cls.__module__.startswith("hybridmat.")}
    assert set(MODEL_ORDER) == built_in  # not the test-only models
    assert {MODEL_REGISTRY[name].category for name in MODEL_ORDER} == {"composition", "graph", "hybrid"}
    for plan in PLANS.values():
        assert {name for name in built_in if is_torch_model(name)} | {"rf"} <= set(plan.hyper)
