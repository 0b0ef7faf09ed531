"""What ``hybridmat rank`` writes and prints: ``ranked.csv``, ``ranked.parquet``, a self-contained
``report.html`` (the top rows + PNG plots embedded as base64) and a rich table of the top rows."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.csv  # noqa: E402
from rich import box  # noqa: E402
from rich.table import Table  # noqa: E402

from hybridmat.atomic_io import atomic_write_bytes, atomic_write_parquet  # noqa: E402
from hybridmat.ranking.query import target_names  # noqa: E402

#: Rows shown in report.html (all ranked rows are in ranked.csv / ranked.parquet).
HTML_ROWS = 200
STYLE = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
         "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#eee}"
         "tr.pareto td{background:#fff3e0}img{max-width:48%;margin:4px}")


def display_columns(table: pa.Table) -> list[str]:
    """rank, id, formula, score, every target's mean and std (e_hull included), pareto."""
    names = table.column_names
    targets = [c for t in target_names(names) for c in (f"{t}_mean", f"{t}_std")]
    return [c for c in ("rank", "id", "formula", "score", *targets, "pareto") if c in names]


def _text(value: object) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, the cut marked with an ellipsis."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


#: Suffixes of a funnel's extra estimates (``e_form_relaxed``, ...): in the files, not in the console table.
ESTIMATE_SUFFIXES = ("_relaxed", "_unrelaxed", "_potential")


def primary_targets(columns: Sequence[str]) -> list[str]:
    """Targets to print: every target but a funnel's extra estimates (the combined ``e_form`` stands for them)."""
    return [t for t in target_names(columns) if not t.endswith(ESTIMATE_SUFFIXES)]


def console_table(table: pa.Table, title: str, rows: int = 20, width: int = 80) -> Table:
    """The first ``rows`` ranked rows as a compact rich table, one line per row within ``width`` columns.

    Each target is shown as ``mean±std`` (3 decimals; the files keep full precision), a Pareto-front row is
    marked ``*`` after its rank. Numbers are never cut;
    when the row is too wide the id (down to 10 characters) and then the formula (down to 8) are cut with
    an ellipsis instead of being wrapped (ranked.csv / ranked.parquet hold them whole): a chemist reads the
    formula first.
    """
    targets = primary_targets(table.column_names)
    shown = table.slice(0, rows).to_pylist()
    front = ["*" if row.get("pareto") else "" for row in shown]
    columns = {"#": [f"{row.get('rank', k)}{mark}" for k, (row, mark) in enumerate(zip(shown, front), start=1)]}
    for name in ("id", "formula"):
        if name in table.column_names:
            columns[name] = [_text(row[name]) for row in shown]
    if "score" in table.column_names:
        columns["score"] = [f"{row['score']:.3f}" if isinstance(row["score"], float) else _text(row["score"])
                            for row in shown]
    for t in targets:
        columns[t] = [f"{row[f'{t}_mean']:.3f}±{row[f'{t}_std']:.3f}" for row in shown]
    widths = {name: max([len(name), *map(len, cells)]) for name, cells in columns.items()}
    excess = sum(widths.values()) + 2 * (len(widths) - 1) - width
    for name, least in (("id", 10), ("formula", 8)):
        if excess > 0 and name in widths:
            cut = min(excess, max(widths[name] - least, 0))
            widths[name] -= cut
            excess -= cut
    caption = "* on the Pareto front" if "pareto" in table.column_names else None
    console = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                    collapse_padding=True, title_justify="left", caption_justify="left")
    for name in columns:
        console.add_column(name, justify="left" if name in ("id", "formula") else "right", no_wrap=True,
                           width=widths[name])
    for cells in zip(*([_clip(cell, widths[name]) for cell in cells] for name, cells in columns.items())):
        console.add_row(*cells)
    return console


def funnel_table(table: pa.Table, title: str) -> Table:
    """What relaxation changed for each ranked funnel row: stage-1 and final rank, the E_hull (or e_form, without a
    hull reference) of the ensemble before and after relaxation, of the potential and combined, band gap before and
    after, and the volume change."""
    energy = "e_hull" if "e_hull_mean" in table.column_names else "e_form"
    console = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True,
                    title_justify="left", caption_justify="left",
                    caption=f"{energy} in eV/atom: ensemble before/after relaxation, potential, combined (± std); "
                            "gap in eV; dV = volume change")
    band_gap = "band_gap_mean" in table.column_names
    headers = ("#", "was", "formula", "before", "after", "potential", "combined", *(("gap",) if band_gap else ()),
               "dV", "conv")
    for name in headers:
        console.add_column(name, justify="left" if name == "formula" else "right", no_wrap=True)
    for row in table.to_pylist():
        gap = (f"{row['band_gap_unrelaxed_mean']:.1f}→{row['band_gap_mean']:.1f}",) if band_gap else ()
        console.add_row(
            str(row["rank"]), str(row["stage1_rank"]), _clip(row["formula"], 12),
            _number(row[f"{energy}_unrelaxed_mean"]), _number(row[f"{energy}_relaxed_mean"]),
            _number(row[f"{energy}_potential_mean"]), f"{row[f'{energy}_mean']:.2f}±{row[f'{energy}_std']:.2f}",
            *gap, f"{row['volume_change']:+.0%}", "yes" if row["converged"] else "no",
        )
    return console


def _number(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.2f}"


def _png(figure: plt.Figure) -> str:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def objectives_plot(ranked: pa.Table, x: str, y: str, n_top: int) -> str:
    """Scatter of two objectives over every ranked row: the top rows and the Pareto front highlighted."""
    figure, axis = plt.subplots(figsize=(6, 4.5))
    xs, ys = ranked.column(x).to_numpy(), ranked.column(y).to_numpy()
    axis.scatter(xs, ys, s=4, color="lightgrey", label=f"all ({len(xs):,})")
    axis.scatter(xs[:n_top], ys[:n_top], s=10, color="tab:blue", label=f"top {min(n_top, len(xs)):,}")
    if "pareto" in ranked.column_names:
        front = ranked.column("pareto").to_numpy()
        order = np.argsort(xs[front])
        axis.plot(xs[front][order], ys[front][order], "o-", color="tab:red", markersize=4,
                  label=f"Pareto front ({int(front.sum())})")
    axis.set_xlabel(x)
    axis.set_ylabel(y)
    axis.legend(fontsize=8)
    return _png(figure)


def score_plot(ranked: pa.Table, n_top: int, by: str) -> str:
    """Histogram of the ranking score with the top-N cut-off marked."""
    figure, axis = plt.subplots(figsize=(6, 4.5))
    scores = ranked.column("score").to_numpy().astype(float)
    axis.hist(scores[np.isfinite(scores)], bins=50, color="tab:blue", alpha=0.7)
    if 0 < n_top < len(scores):
        axis.axvline(scores[n_top - 1], color="black", linestyle="--", label=f"top {n_top:,} cut-off")
        axis.legend(fontsize=8)
    axis.set_xlabel(f"score ({by})")
    axis.set_ylabel("rows")
    return _png(figure)


def report_html(top: pa.Table, details: Sequence[tuple[str, str]], images: Sequence[str]) -> str:
    """A self-contained HTML page: run details, the first ``HTML_ROWS`` top rows, the plots."""
    columns = display_columns(top)
    rows = top.select(columns).slice(0, HTML_ROWS).to_pylist()
    body = ["<h1>hybridmat rank</h1>", "<table>"]
    body += [f"<tr><th>{html.escape(k)}</th><td style='text-align:left'>{html.escape(v)}</td></tr>" for k, v in details]
    body += ["</table>", *(f"<img src='data:image/png;base64,{image}'>" for image in images)]
    body += [f"<h2>top rows ({len(rows):,} of {top.num_rows:,} shown)</h2>", "<table>",
             "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>"]
    for row in rows:
        css = " class='pareto'" if row.get("pareto") else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{html.escape(_text(row[c]))}</td>" for c in columns) + "</tr>")
    body.append("</table>")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>hybridmat rank</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")


def write_ranking(ranked: pa.Table, top: pa.Table, out: Path, details: Sequence[tuple[str, str]], by: str,
                  axes: tuple[str, str] | None) -> None:
    """Write ``top`` to ranked.csv/ranked.parquet and report.html (plots over all ``ranked`` rows)."""
    out = Path(out)
    images = [objectives_plot(ranked, *axes, top.num_rows)] if axes else []
    images.append(score_plot(ranked, top.num_rows, by))
    atomic_write_parquet(top, out / "ranked.parquet")
    buffer = pa.BufferOutputStream()
    pyarrow.csv.write_csv(top, buffer)
    atomic_write_bytes(out / "ranked.csv", buffer.getvalue().to_pybytes())
    atomic_write_bytes(out / "report.html", report_html(top, details, images).encode())
