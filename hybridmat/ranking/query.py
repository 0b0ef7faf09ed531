"""Filter and order predictions with DuckDB, in target names.

Predictions are either the streaming screener's directory (``DIR/shards/part-NNNNN.parquet``; the
``part-*.errors.parquet`` files are skipped) or one ``hybridmat predict`` Parquet file; DuckDB reads
them in place. In ``--where``, ``--by`` and ``--pareto`` a bare target name (``e_form``) means the
ensemble mean (``e_form_mean``); ``e_form_std`` and every other column can be named directly. With a
hull reference, ``e_hull_mean`` (predicted E_hull) and ``e_hull_std`` (= ``e_form_std``, since the hull
of known phases is fixed) join the columns, so ``e_hull`` and ``lcb:e_hull`` work like any target.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from hybridmat.ranking.hull import HullReference

#: The screener's data shards; ``part-00000.errors.parquet`` does not end in a digit before ``.parquet``.
SHARD_GLOB = "part-*[0-9].parquet"
BOUNDS = {"lcb": "-", "ucb": "+"}


def prediction_files(path: Path) -> str:
    """What ``read_parquet`` reads: the shard glob of a screener directory, or a predictions file."""
    path = Path(path)
    if path.is_dir():
        if not any((path / "shards").glob(SHARD_GLOB)):
            raise FileNotFoundError(f"{path} has no shards/{SHARD_GLOB}; give a `hybridmat screen` output "
                                    "directory or a `hybridmat predict` .parquet file")
        return str(path / "shards" / SHARD_GLOB)
    if not path.is_file():
        raise FileNotFoundError(f"predictions {path} not found")
    return str(path)


def target_names(columns: Sequence[str]) -> list[str]:
    """Targets with both ``<t>_mean`` and ``<t>_std`` columns, in column order."""
    means = [c.removesuffix("_mean") for c in columns if c.endswith("_mean")]
    return [t for t in means if f"{t}_std" in columns]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _unknown(name: str, columns: Sequence[str], hull: bool) -> str:
    hint = "" if hull else " (e_hull needs --hull-reference)"
    return f"unknown name {name!r}; available: {', '.join([*target_names(columns), *columns])}{hint}"


def resolve_column(name: str, columns: Sequence[str], hull: bool = False) -> str:
    """The column a name stands for: ``e_form`` -> ``e_form_mean``; other column names as they are."""
    if name in target_names(columns):
        return f"{name}_mean"
    if name in columns:
        return name
    raise ValueError(_unknown(name, columns, hull))


def order_expression(by: str, columns: Sequence[str], kappa: float, hull: bool = False) -> tuple[str, bool]:
    """SQL for ``--by`` and whether it sorts descending: ``NAME`` ascending, ``-NAME`` descending,
    ``lcb:T`` = mean - kappa*std ascending, ``ucb:T`` = mean + kappa*std descending."""
    bound, _, name = by.rpartition(":")
    if not bound:
        return _quote(resolve_column(name.removeprefix("-"), columns, hull)), name.startswith("-")
    if bound not in BOUNDS:
        raise ValueError(f"--by {by!r}: the prefix must be lcb: or ucb:, not {bound!r}")
    if name not in target_names(columns):
        hint = "" if hull else " (e_hull needs --hull-reference)"
        raise ValueError(f"--by {by!r}: bounds need a target with _mean and _std columns: {target_names(columns)}{hint}")
    mean, std = _quote(f"{name}_mean"), _quote(f"{name}_std")
    return f"{mean} {BOUNDS[bound]} {float(kappa)!r} * {std}", bound == "ucb"


def _with_hull(connection: duckdb.DuckDBPyConnection, hull: HullReference) -> None:
    """Add view ``predictions`` = ``raw`` + ``e_hull_mean``/``e_hull_std``, one hull energy per formula."""
    if "e_form_mean" not in connection.table("raw").columns:
        raise ValueError("a hull reference needs e_form predictions (e_form_mean, e_form_std)")
    distinct = connection.sql("SELECT DISTINCT formula FROM raw WHERE formula IS NOT NULL").fetchall()
    formulas = [row[0] for row in distinct]
    energies = hull.hull_energies(formulas) if formulas else np.empty(0)
    connection.register("hull", pa.table({"formula": pa.array(formulas, pa.string()), "hull_energy": energies}))
    connection.sql("CREATE VIEW predictions AS SELECT raw.*, raw.e_form_mean - hull.hull_energy AS e_hull_mean, "
                   "raw.e_form_std AS e_hull_std FROM raw LEFT JOIN hull USING (formula)")


def _single_expression(where: str) -> str:
    """``where`` unchanged, after checking it holds no ``;`` that could end the query and start another."""
    if any(where[start] == ";" for start, kind in duckdb.tokenize(where) if kind == duckdb.token_type.operator):
        raise ValueError(f"--where {where!r}: give one SQL expression, without ';'")
    return where


def query_predictions(path: Path, where: str | None = None, by: str = "e_form", kappa: float = 1.0,
                      hull: HullReference | None = None) -> tuple[pa.Table, int]:
    """Rows matching ``where`` ordered by ``by`` (ties by id) with ``rank`` and ``score`` columns, and
    the number of predictions before filtering."""
    connection = duckdb.connect()
    connection.read_parquet(prediction_files(path), union_by_name=True).create_view("raw")
    if hull is None:
        connection.sql("CREATE VIEW predictions AS SELECT * FROM raw")
    else:
        _with_hull(connection, hull)
    columns = connection.table("predictions").columns
    targets = target_names(columns)
    expression, descending = order_expression(by, columns, kappa, hull is not None)
    aliases = [t for t in targets if t not in columns]
    named = ", ".join(["*", *(f"{_quote(t + '_mean')} AS {_quote(t)}" for t in aliases)])
    exclude = f" EXCLUDE ({', '.join(map(_quote, aliases))})" if aliases else ""
    where = _single_expression(where) if where else "TRUE"
    sql = (f"WITH named AS (SELECT {named} FROM predictions), "
           f"chosen AS (SELECT *, {expression} AS score FROM named WHERE ({where})) "
           f"SELECT *{exclude} FROM chosen ORDER BY score {'DESC' if descending else 'ASC'} NULLS LAST, id")
    try:
        table = pa.table(connection.sql(sql).arrow())
    except duckdb.Error as error:
        missing = re.search(r'Referenced column "([^"]+)" not found', str(error))
        if missing:
            raise ValueError(f"--where {where!r}: {_unknown(missing.group(1), columns, hull is not None)}") from None
        raise ValueError(f"cannot rank {path} with --where {where!r}: {str(error).splitlines()[0]}") from None
    total = connection.sql("SELECT count(*) FROM predictions").fetchall()[0][0]
    return table.add_column(0, "rank", pa.array(np.arange(1, table.num_rows + 1), pa.int64())), total
