"""``hybridmat rank``: filter, order and Pareto-mark predictions; write ranked.csv/.parquet, report.html."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pyarrow as pa
import typer


def rank(predictions: Path, out: Path, where: str | None = None, by: str = "e_form", top: int | None = None,
         kappa: float = 1.0, pareto: str | None = None, hull_reference: str | None = None,
         command: str = "hybridmat rank") -> tuple[pa.Table, list[tuple[str, str]]]:
    """Rank ``predictions`` into ``out``; the rows written and the run's details (label, value)."""
    from hybridmat.ranking.hull import read_hull_reference
    from hybridmat.ranking.pareto import parse_objectives, pareto_front
    from hybridmat.ranking.query import query_predictions, resolve_column
    from hybridmat.ranking.report import write_ranking

    hull = read_hull_reference(hull_reference) if hull_reference else None
    ranked, total = query_predictions(predictions, where, by, kappa, hull)
    details = [("command", command), ("predictions", str(predictions)), ("where", where or "(all rows)"),
               ("by", f"{by} (kappa {kappa:g})" if ":" in by else by),
               ("rows", f"{ranked.num_rows:,} of {total:,} pass")]
    if hull_reference:
        details.append(("hull reference", f"{hull_reference} ({len(hull):,} phases + elements at 0 eV/atom)"))
    means = [c for c in ranked.column_names if c.endswith("_mean")]
    axes = (means[0], means[1]) if len(means) >= 2 else None
    if pareto:
        objectives = parse_objectives(pareto)
        axes = (resolve_column(objectives[0][0], ranked.column_names, hull is not None),
                resolve_column(objectives[1][0], ranked.column_names, hull is not None))
        front = pareto_front(ranked.column(axes[0]).to_numpy(), ranked.column(axes[1]).to_numpy(),
                             (objectives[0][1], objectives[1][1]))
        ranked = ranked.append_column("pareto", pa.array(front))
        details.append(("Pareto front", f"{int(front.sum()):,} rows ({pareto}, among all that pass)"))
    chosen = ranked.slice(0, top) if top is not None else ranked
    write_ranking(ranked, chosen, out, details, by, axes)
    return chosen, details


def rank_command(
    predictions: Annotated[Path, typer.Argument(help="A `hybridmat screen` directory (shards/part-*.parquet) or a "
                                                     "`hybridmat predict` .parquet file.")],
    out: Annotated[Path, typer.Option(help="Directory for ranked.csv, ranked.parquet and report.html.")],
    where: Annotated[str | None, typer.Option(help="SQL filter in target names (e_form means e_form_mean), "
                                                   "e.g. \"e_form < -0.5 and band_gap between 1 and 3\".")] = None,
    by: Annotated[str, typer.Option(help="Order: e_form (ascending), -band_gap (descending), lcb:e_form "
                                         "(mean - kappa*std, ascending), ucb:band_gap (mean + kappa*std, "
                                         "descending), e_hull (with --hull-reference). Ties by id.")] = "e_form",
    top: Annotated[int | None, typer.Option(min=1, help="Keep the first N rows (default: all that pass).")] = None,
    kappa: Annotated[float, typer.Option(min=0.0, help="Standard deviations in lcb:/ucb: bounds.")] = 1.0,
    pareto: Annotated[str | None, typer.Option(help="Mark the Pareto front of two objectives, "
                                                    "e.g. e_form:min,band_gap:max.")] = None,
    hull_reference: Annotated[str | None, typer.Option(help="Known phases (formula + e_form in eV/atom) for "
                                                            "e_hull: TABLE.parquet or .csv[?split=NAME/PART].")] = None,
) -> None:
    """Filter, order and Pareto-mark predictions; write ranked.csv, ranked.parquet and report.html."""
    from hybridmat.console import console, invocation
    from hybridmat.ranking.report import console_table

    try:
        chosen, details = rank(predictions, out, where, by, top, kappa, pareto, hull_reference, invocation())
    except (ValueError, FileNotFoundError, KeyError) as error:
        raise typer.BadParameter(str(error)) from None
    console.print(console_table(chosen, title=f"top rows by {by} ({invocation()})"))
    console.print(f"{dict(details)['rows']}; {chosen.num_rows:,} written to {out / 'ranked.csv'}, "
                  f"{out / 'ranked.parquet'} and {out / 'report.html'}")
