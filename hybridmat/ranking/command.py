"""``hybridmat rank``: filter, order and Pareto-mark predictions; print the top rows and, with ``--out``, write
ranked.csv/.parquet and report.html."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pyarrow as pa
import typer


def rank(predictions: Path, out: Path | None, where: str | None = None, by: str = "e_form", top: int | None = None,
         kappa: float = 1.0, pareto: str | None = None, hull_reference: str | None = None,
         command: str = "hybridmat rank",
         include_out_of_domain: bool = False) -> tuple[pa.Table, list[tuple[str, str]]]:
    """Rank ``predictions`` (into the directory ``out`` unless ``None``); the chosen rows and the run's details
    (label, value)."""
    from hybridmat.ranking.hull import read_hull_reference
    from hybridmat.ranking.pareto import pareto_front, parse_objectives
    from hybridmat.ranking.query import out_of_domain_rows, query_predictions, resolve_column
    from hybridmat.ranking.report import write_ranking

    hull = read_hull_reference(hull_reference) if hull_reference else None
    ranked, total = query_predictions(predictions, where, by, kappa, hull, include_out_of_domain)
    details = [("command", command), ("predictions", str(predictions)), ("where", where or "(all rows)"),
               ("by", f"{by} (kappa {kappa:g})" if ":" in by else by),
               ("rows", f"{ranked.num_rows:,} of {total:,} pass")]
    outside = out_of_domain_rows(predictions)
    if outside is not None:
        what = "kept (--include-out-of-domain)" if include_out_of_domain else \
            "left out (--include-out-of-domain keeps them)"
        details.append(("out of domain", f"{outside:,} rows {what}"))
    if hull_reference:
        details.append(("hull reference", f"{hull_reference} ({len(hull):,} phases + elements at 0 eV/atom)"))
        incomplete = int(sum(ranked.column("hull_incomplete").fill_null(False).to_pylist()))
        details.append(("incomplete hulls", (f"{incomplete:,} of {ranked.num_rows:,} rows: a binary subsystem has "
                                             "no known compound (hull_incomplete; E_hull is an upper bound)")))
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
    if out is not None:
        write_ranking(ranked, chosen, out, details, by, axes)
    return chosen, details


def rank_command(
    predictions: Annotated[Path, typer.Argument(help="A `hybridmat screen` directory (shards/part-*.parquet) or a "
                                                     "`hybridmat predict` .parquet file.")],
    out: Annotated[Path | None, typer.Option(help="Write ranked.csv, ranked.parquet and report.html to this "
                                                  "directory (default: only print the top rows).")] = None,
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
    include_out_of_domain: Annotated[bool, typer.Option(help="Keep rows whose in_domain is false (left out by "
                                                             "default).")] = False,
) -> None:
    """Filter, order and Pareto-mark predictions; print the top rows (and with --out write the files)."""
    from hybridmat.console import console, invocation
    from hybridmat.ranking.report import console_table

    try:
        chosen, details = rank(predictions, out, where, by, top, kappa, pareto, hull_reference, invocation(),
                               include_out_of_domain)
    except (ValueError, FileNotFoundError, KeyError) as error:
        raise typer.BadParameter(str(error)) from None
    console.print(console_table(chosen, title=f"top rows by {by} ({invocation()})", width=console.width))
    for label in ("out of domain", "incomplete hulls"):
        if label in dict(details):
            console.print(f"{label}: {dict(details)[label]}")
    written = (f"{chosen.num_rows:,} written to {out / 'ranked.csv'}, {out / 'ranked.parquet'} and "
               f"{out / 'report.html'}") if out is not None else "add --out DIR to write them"
    console.print(f"{dict(details)['rows']}; {written}")
