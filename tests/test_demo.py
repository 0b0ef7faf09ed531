"""The main job end to end: candidates -> screening on a local Ray -> ranked table and report."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from hybridmat.cli import app
from hybridmat.features.store import read_manifest


@pytest.mark.slow
def test_demo_screens_and_ranks_every_candidate(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "-n", "120", "--relax-top", "3",
                                      "--hull-reference", str(_reference(tmp_path))])
    assert result.exit_code == 0, result.output
    counts = read_manifest(tmp_path / "screen")["counts"]
    rejected = pq.read_table(tmp_path / "candidates.rejected.parquet").num_rows
    assert counts["inputs"] + rejected == 120
    assert counts["inputs"] == counts["rows"] + counts["errors"]
    ranked = pq.read_table(tmp_path / "rank" / "ranked.parquet")
    assert 0 < ranked.num_rows <= 25
    assert ranked.column("band_gap_mean").to_numpy().min() >= 1.0
    assert {"e_hull_mean", "pareto"} <= set(ranked.column_names)
    assert (tmp_path / "rank" / "report.html").stat().st_size > 10_000
    funnel = pq.read_table(tmp_path / "screen" / "funnel" / "predictions.parquet")
    funnel_errors = pq.read_table(tmp_path / "screen" / "funnel" / "errors.parquet")
    shortlist = pq.read_table(tmp_path / "screen" / "funnel" / "shortlist.parquet")
    assert shortlist.num_rows == min(3, ranked.num_rows)  # the best 3 in the window, or all of them if fewer
    # every shortlisted candidate accounted for, once
    assert sorted(funnel["id"].to_pylist() + funnel_errors["id"].to_pylist()) == sorted(shortlist["id"].to_pylist())
    assert {"e_form_relaxed_mean", "e_form_potential_mean", "e_form_unrelaxed_mean", "volume_change"} <= set(
        funnel.column_names)
    assert f"what relaxing the top {funnel.num_rows} changed" in result.output


def _reference(tmp_path: Path) -> Path:
    """A few known phases (formula, e_form in eV/atom) standing in for the training data."""
    path = tmp_path / "phases.csv"
    path.write_text("formula,e_form\nLiF,-3.2\nNaCl,-2.1\nMgO,-3.0\nCaO,-3.3\nKBr,-2.0\nSrTiO3,-3.5\n")
    return path
