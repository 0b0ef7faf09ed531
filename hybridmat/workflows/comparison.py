"""Comparison tables and figures, always drawn from measured results (never typed-in numbers).

A *result* is one row per (model, target): ``model``, ``category`` (composition / graph / hybrid),
``target``, ``mae``, ``rmse``, ``r2``, ``train_seconds``, ``parameters``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from rich.table import Table  # noqa: E402

CATEGORY_COLOURS = {"composition": "tab:orange", "graph": "tab:blue", "hybrid": "tab:green"}
#: Colour of a category not in :data:`CATEGORY_COLOURS` (a row without one is labelled "other").
OTHER_COLOUR = "grey"
COLUMNS = ("model", "category", "target", "MAE", "RMSE", "R²", "train s", "parameters")


def _cells(row: Mapping[str, Any]) -> list[str]:
    return [
        row["model"], row.get("category", ""), row["target"], f"{row['mae']:.4f}",
        f"{row.get('rmse', float('nan')):.4f}", f"{row['r2']:.3f}",
        f"{row.get('train_seconds', float('nan')):.0f}", f"{row.get('parameters', 0):,}",
    ]


def comparison_table(results: Sequence[Mapping[str, Any]], title: str) -> Table:
    """A rich table, best MAE first within each target."""
    table = Table(title=title)
    for column in COLUMNS:
        table.add_column(column, justify="left" if column in ("model", "category", "target") else "right")
    for row in sorted(results, key=lambda r: (r["target"], r["mae"])):
        table.add_row(*_cells(row))
    return table


def markdown_table(results: Sequence[Mapping[str, Any]]) -> str:
    """The same table as GitHub markdown (for the README)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * 3 + "---:|" * (len(COLUMNS) - 3)]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in sorted(results, key=lambda r: (r["target"], r["mae"]))]
    return "\n".join(lines)


def comparison_figure(
    results: Sequence[Mapping[str, Any]], path: Path, target: str, baseline: str = "rf", unit: str = "eV/atom"
) -> Path:
    """Two panels: test MAE per model (horizontal bars, a line at the ``baseline`` model) and training
    time vs MAE (scatter coloured by category).

    Every row of ``target`` is drawn in both panels: a category outside :data:`CATEGORY_COLOURS` (or a
    missing one, shown as "other") gets its own grey legend entry instead of being left out.
    """
    rows = sorted((r for r in results if r["target"] == target), key=lambda r: r["mae"], reverse=True)
    if not rows:
        raise ValueError(f"no results for target {target!r}")
    figure, (bars, scatter) = plt.subplots(1, 2, figsize=(12, 0.5 * len(rows) + 2.5))
    colours = [CATEGORY_COLOURS.get(_category(r), OTHER_COLOUR) for r in rows]
    bars.barh([r["model"] for r in rows], [r["mae"] for r in rows], color=colours)
    base = next((r["mae"] for r in rows if r["model"] == baseline), None)
    if base is not None:
        bars.axvline(base, color="black", linestyle="--", linewidth=1, label=f"{baseline} baseline")
        bars.legend(loc="lower right")
    bars.set_xlabel(f"test MAE ({unit})")
    bars.set_title(f"{target}: test MAE per model")
    extra = sorted({_category(r) for r in rows} - set(CATEGORY_COLOURS))
    for category, colour in [*CATEGORY_COLOURS.items(), *((c, OTHER_COLOUR) for c in extra)]:
        chosen = [r for r in rows if _category(r) == category]
        if chosen:
            scatter.scatter([r.get("train_seconds", np.nan) for r in chosen], [r["mae"] for r in chosen],
                            color=colour, label=category, s=60)
            for r in chosen:
                scatter.annotate(r["model"], (r.get("train_seconds", np.nan), r["mae"]), fontsize=8,
                                 xytext=(4, 4), textcoords="offset points")
    scatter.set_xscale("log")
    scatter.set_xlabel("training time (s)")
    scatter.set_ylabel(f"test MAE ({unit})")
    scatter.set_title("training time vs MAE")
    scatter.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _category(row: Mapping[str, Any]) -> str:
    """The row's category, "other" when it has none."""
    return row.get("category") or "other"


def parity_figure(
    predictions: Mapping[str, tuple[np.ndarray, np.ndarray]], path: Path, target: str, unit: str = "eV/atom"
) -> Path:
    """One parity panel per model: predicted vs DFT value on the test split, with the MAE."""
    names = list(predictions)
    columns = min(4, len(names))
    rows = -(-len(names) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.4 * rows), squeeze=False)
    for axis, name in zip(axes.flat, names):
        true, pred = (np.asarray(a, dtype=float).ravel() for a in predictions[name])
        mask = np.isfinite(true) & np.isfinite(pred)
        true, pred = true[mask], pred[mask]
        low, high = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
        axis.plot([low, high], [low, high], color="black", linewidth=0.8)
        axis.scatter(true, pred, s=4, alpha=0.4)
        axis.set_title(f"{name}  MAE {np.mean(np.abs(pred - true)):.3f}", fontsize=9)
        axis.set_xlabel(f"DFT {target} ({unit})", fontsize=8)
        axis.set_ylabel(f"predicted ({unit})", fontsize=8)
    for axis in list(axes.flat)[len(names):]:
        axis.set_visible(False)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
