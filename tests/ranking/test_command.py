"""``rank`` through typer on a small app, as cli.py registers it: files written, order, Pareto, E_hull."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from hybridmat.ranking.command import rank_command
from tests.ranking.test_hull import REFERENCE


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)
    app.command("rank")(rank_command)
    return app


def _rank(app: typer.Typer, *args: str) -> str:
    result = CliRunner().invoke(app, ["rank", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_rank_writes_csv_parquet_and_report(app: typer.Typer, predictions_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "ranked"
    output = _rank(app, str(predictions_path), "--out", str(out),
                   "--where", "e_form < -0.5 and band_gap between 1 and 3",
                   "--by", "lcb:e_form", "--top", "3", "--pareto", "e_form:min,band_gap:max")
    assert "mp-b" in output and "4 of 7 pass" in output
    rows = list(csv.DictReader((out / "ranked.csv").open()))
    assert [r["id"] for r in rows] == ["mp-b", "mp-c", "mp-e"]
    ranked = pq.read_table(out / "ranked.parquet")
    assert ranked.column("id").to_pylist() == ["mp-b", "mp-c", "mp-e"]
    # among the 4 that pass, mp-f (-0.625, 1.0) is dominated by mp-b (-0.75, 2.5)
    assert ranked.column("pareto").to_pylist() == [True, True, True]
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "mp-e" in page and "mp-f" not in page
    assert not list(out.glob(".*.tmp"))


def test_rank_by_e_hull_with_a_reference_table(app: typer.Typer, predictions_path: Path, tmp_path: Path) -> None:
    reference = tmp_path / "known.csv"
    reference.write_text("formula,e_form\n" + "".join(f"{f},{e}\n" for f, e in REFERENCE.items()))
    out = tmp_path / "ranked"
    _rank(app, str(predictions_path), "--out", str(out), "--hull-reference", str(reference), "--by", "e_hull",
          "--where", "e_hull < 0.1")
    ranked = pq.read_table(out / "ranked.parquet")
    # O2 at -0.125 is below its element; Li on it; Li2O3 (-1.25) 0.064 above the Li2O2-O2 tie line
    # (-1.3144 at x_O = 0.6); Li2O 0.066 above the reference Li2O; LiO2, Li2O2, LiO3 are >= 0.1 above
    assert ranked.column("id").to_pylist() == ["mp-g", "mp-d", "mp-e", "mp-a"]
    e_hull = dict(zip(ranked.column("id").to_pylist(), ranked.column("e_hull_mean").to_pylist()))
    assert e_hull["mp-g"] == pytest.approx(-0.125) and e_hull["mp-d"] == pytest.approx(0.0)
    assert e_hull["mp-e"] == pytest.approx(-1.25 + 1.643 * 0.8) and e_hull["mp-a"] == pytest.approx(0.066)
    assert ranked.column("e_hull_std").to_pylist() == ranked.column("e_form_std").to_pylist()
    assert ranked.column("score").to_pylist() == sorted(e_hull.values())


def test_unknown_column_is_a_usage_error(app: typer.Typer, predictions_path: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["rank", str(predictions_path), "--out", str(tmp_path), "--where", "e_fromm < 0"])
    assert result.exit_code == 2
    assert "e_fromm" in result.output and "band_gap_std" in result.output
    assert not (tmp_path / "ranked.csv").exists()


def test_rank_accepts_a_table_without_band_gap(app: typer.Typer, tmp_path: Path) -> None:
    table = pa.table({"id": ["x", "y"], "formula": ["Li", "O2"], "n_sites": pa.array([1, 2], pa.int32()),
                      "e_form_mean": [0.5, 0.25], "e_form_std": [0.0, 0.0], "model_id": ["m", "m"]})
    pq.write_table(table, tmp_path / "p.parquet")
    _rank(app, str(tmp_path / "p.parquet"), "--out", str(tmp_path / "out"))
    assert pq.read_table(tmp_path / "out" / "ranked.parquet").column("id").to_pylist() == ["y", "x"]
    _rank(app, str(tmp_path / "p.parquet"), "--out", str(tmp_path / "out"), "--by", "-e_form")  # not an option
    assert pq.read_table(tmp_path / "out" / "ranked.parquet").column("id").to_pylist() == ["x", "y"]


def test_rank_without_out_prints_the_table_and_writes_nothing(app: typer.Typer, predictions_path: Path,
                                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    output = _rank(app, str(predictions_path), "--top", "3", "--by", "lcb:e_form",
                   "--pareto", "e_form:min,band_gap:max")
    assert "mp-b" in output and "add --out DIR" in output
    assert list(work.iterdir()) == []


def test_console_table_keeps_each_row_on_one_line_in_80_columns() -> None:
    from rich.console import Console

    from hybridmat.ranking.report import console_table

    n = 4
    ids = [f"cand-double_perovskite-Ba2MgWO6-{i:05d}" for i in range(n)]
    columns = {"rank": list(range(1, n + 1)), "id": ids, "formula": ["Li7La3Zr2O12", "Ba2MgWO6", "LiO2", "O2"],
               "score": [-1.25] * n, "pareto": [True, False, False, True]}
    for target in ("e_form", "band_gap", "e_hull"):
        columns |= {f"{target}_mean": [-1.5, 2.25, 0.0, 3.0], f"{target}_std": [0.125] * n}
    console = Console(width=80, record=True)
    console.print(console_table(pa.table(columns), "top rows", width=80))
    lines = console.export_text().splitlines()
    rows = [line for line in lines if line.split() and line.split()[0].rstrip("*").isdigit()]
    assert len(rows) == n and all(len(line) <= 80 for line in lines)
    assert rows[0].count("-1.500±0.125") == 3 and rows[2].count("0.000±0.125") == 3  # numbers are never cut
    assert rows[0].split()[0] == "1*" and rows[1].split()[0] == "2"  # the Pareto mark
    assert "cand-double…" in rows[0] and "Li7La3Zr2O12" in rows[0]  # the id is cut before the formula
