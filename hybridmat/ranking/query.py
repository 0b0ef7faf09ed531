"""Filter and order predictions with DuckDB, in target names.

Predictions are either the streaming screener's directory (``DIR/shards/part-NNNNN.parquet``; the
``part-*.errors.parquet`` files are skipped) or one ``hybridmat predict`` Parquet file; DuckDB reads
them in place. In ``--where``, ``--by`` and ``--pareto`` a bare target name (``e_form``) means the
ensemble mean (``e_form_mean``); ``e_form_std`` and every other column can be named directly. With a
hull reference, ``e_hull_mean`` (predicted E_hull) and ``e_hull_std`` (= ``e_form_std``, since the hull
of known phases is fixed) join the columns, so ``e_hull`` and ``lcb:e_hull`` work like any target; a table
with more formation-energy estimates (a funnel's ``e_form_relaxed``, ``e_form_potential``, ...) gets
``e_hull_relaxed``, ``e_hull_potential``, ... the same way.

``--where`` is parsed here, not handed to DuckDB: it may hold column names (bare or "double-quoted"),
numbers, 'strings', ``true``/``false``/``null``, comparisons (``= == != <> < <= > >=``), ``and``/``or``/``not``,
``[not] between .. and ..``, ``[not] in (..)``, ``is [not] null``, ``+ - * / %`` and parentheses; anything
else (function calls, subqueries, casts, comments, ``||``, ``;``) is refused, naming the token. The filter
is re-written from its parse tree (names quoted, strings re-escaped), and DuckDB runs it with external
access disabled and its configuration locked: the shards are handed over as an Arrow dataset, so the
connection itself can open no file, even if a filter slipped through.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from hybridmat.ranking.hull import HullReference

#: The screener's data shards; ``part-00000.errors.parquet`` does not end in a digit before ``.parquet``.
SHARD_GLOB = "part-*[0-9].parquet"
BOUNDS = {"lcb": "-", "ucb": "+"}


def prediction_files(path: Path) -> list[Path]:
    """The Parquet files to rank: a screener directory's data shards, or one predictions file."""
    path = Path(path)
    if path.is_dir():
        shards = sorted((path / "shards").glob(SHARD_GLOB))
        if not shards:
            raise FileNotFoundError(f"{path} has no shards/{SHARD_GLOB}; give a `hybridmat screen` output "
                                    "directory or a `hybridmat predict` .parquet file")
        return shards
    if not path.is_file():
        raise FileNotFoundError(f"predictions {path} not found")
    return [path]


def prediction_dataset(path: Path) -> ds.Dataset:
    """The predictions as one Arrow dataset (scanned lazily), columns united by name across shards."""
    files = prediction_files(path)
    schema = pa.unify_schemas([pq.read_schema(file) for file in files], promote_options="permissive")
    return ds.dataset([str(file) for file in files], schema=schema, format="parquet")


def out_of_domain_rows(path: Path) -> int | None:
    """How many predictions have ``in_domain = false`` (None when the predictions carry no domain flag)."""
    dataset = prediction_dataset(path)
    if "in_domain" not in dataset.schema.names:
        return None
    return dataset.count_rows(filter=~ds.field("in_domain"))


def sealed_connection() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection that can open no file or URL and cannot be re-configured."""
    return duckdb.connect(config={"enable_external_access": False, "lock_configuration": True})


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
        raise ValueError(f"--by {by!r}: bounds need a target with _mean and _std columns: "
                         f"{target_names(columns)}{hint}")
    mean, std = _quote(f"{name}_mean"), _quote(f"{name}_std")
    return f"{mean} {BOUNDS[bound]} {float(kappa)!r} * {std}", bound == "ucb"


def energy_targets(columns: Sequence[str]) -> list[str]:
    """Formation-energy targets (``e_form`` and ``e_form_<estimate>``, e.g. a funnel's ``e_form_potential``)."""
    return [t for t in target_names(columns) if t == "e_form" or t.startswith("e_form_")]


def _with_hull(connection: duckdb.DuckDBPyConnection, hull: HullReference) -> None:
    """Add view ``predictions`` = ``raw`` + ``e_hull<suffix>_mean``/``_std`` for every ``e_form<suffix>`` target,
    one hull energy per formula."""
    estimates = energy_targets(connection.table("raw").columns)
    if "e_form" not in estimates:
        raise ValueError("a hull reference needs e_form predictions (e_form_mean, e_form_std)")
    distinct = connection.sql("SELECT DISTINCT formula FROM raw WHERE formula IS NOT NULL").fetchall()
    formulas = [row[0] for row in distinct]
    energies, phases, incomplete = hull.coverage(formulas)
    connection.register("hull", pa.table({"formula": pa.array(formulas, pa.string()), "hull_energy": energies,
                                          "hull_phases": phases, "hull_incomplete": incomplete}))
    hull_columns = ", ".join(
        f"raw.{_quote(t + '_mean')} - hull.hull_energy AS {_quote('e_hull' + t[6:] + '_mean')}, "
        f"raw.{_quote(t + '_std')} AS {_quote('e_hull' + t[6:] + '_std')}" for t in estimates)
    connection.sql(f"CREATE VIEW predictions AS SELECT raw.*, {hull_columns}, hull.hull_phases, "
                   "hull.hull_incomplete FROM raw LEFT JOIN hull USING (formula)")


_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?![A-Za-z_0-9]))
  | (?P<string>'(?:[^']|'')*')
  | (?P<quoted>"(?:[^"]|"")+")
  | (?P<word>[A-Za-z_][A-Za-z_0-9]*)
  | (?P<operator><=|>=|<>|!=|==|[=<>+*%(),]|-(?!-)|/(?!\*))
""", re.VERBOSE)
_KEYWORDS = {"and", "or", "not", "between", "in", "is", "null", "true", "false"}
_COMPARISONS = {"=": "=", "==": "=", "!=": "<>", "<>": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_ALLOWED = ("column names, numbers, 'strings', true/false/null, comparisons, and/or/not, between, in, "
            "is [not] null, + - * / % and parentheses")


class _Filter:
    """Recursive-descent parser for the ``--where`` grammar; ``parse()`` returns the re-written SQL."""

    def __init__(self, where: str, columns: Sequence[str], hull: bool) -> None:
        self.where, self.columns, self.hull = where, columns, hull
        self.tokens: list[tuple[str, str, int]] = []  # (kind, text, position)
        position = 0
        while position < len(where):
            match = _TOKEN.match(where, position) or re.compile(r"--|/\*|\|\||::|\S").match(where, position)
            kind, text = match.lastgroup or "other", match.group()
            if kind == "word" and text.lower() in _KEYWORDS:
                kind, text = "keyword", text.lower()
            if kind != "space":
                self.tokens.append((kind, text, position))
            position = match.end()
        self.index = 0

    def refuse(self, token: str, position: int, why: str = "is not allowed") -> None:
        raise ValueError(f"--where {self.where!r}: {token!r} at character {position + 1} {why}; "
                         f"a filter may use {_ALLOWED}")

    def peek(self, *texts: str) -> bool:
        return self.index < len(self.tokens) and self.tokens[self.index][1] in texts

    def take(self) -> tuple[str, str, int]:
        if self.index == len(self.tokens):
            raise ValueError(f"--where {self.where!r}: the filter ends too early")
        self.index += 1
        return self.tokens[self.index - 1]

    def expect(self, text: str) -> None:
        kind, found, position = self.take()
        if found != text:
            self.refuse(found, position, f"is not allowed here (expected {text!r})")

    def parse(self) -> str:
        if not self.tokens:
            raise ValueError("--where is empty; leave it out to keep every row")
        sql = self.disjunction()
        if self.index < len(self.tokens):
            kind, text, position = self.tokens[self.index]
            self.refuse(text, position, "is not allowed" if kind == "other" else "is not allowed here (the filter "
                        "should end)")
        return sql

    def disjunction(self) -> str:
        sql = self.conjunction()
        while self.peek("or"):
            self.take()
            sql = f"({sql} OR {self.conjunction()})"
        return sql

    def conjunction(self) -> str:
        sql = self.negation()
        while self.peek("and"):
            self.take()
            sql = f"({sql} AND {self.negation()})"
        return sql

    def negation(self) -> str:
        if self.peek("not"):
            self.take()
            return f"(NOT {self.negation()})"
        return self.predicate()

    def predicate(self) -> str:
        left = self.sum()
        if self.peek(*_COMPARISONS):
            return f"({left} {_COMPARISONS[self.take()[1]]} {self.sum()})"
        if self.peek("is"):
            self.take()
            negated = " NOT" if self.peek("not") and self.take() else ""
            self.expect("null")
            return f"({left} IS{negated} NULL)"
        negated = "NOT " if self.peek("not") and self.take() else ""
        if self.peek("between"):
            self.take()
            low = self.sum()
            self.expect("and")
            return f"({left} {negated}BETWEEN {low} AND {self.sum()})"
        if self.peek("in"):
            self.take()
            self.expect("(")
            items = [self.sum()]
            while self.peek(","):
                self.take()
                items.append(self.sum())
            self.expect(")")
            return f"({left} {negated}IN ({', '.join(items)}))"
        if negated:
            _, text, position = self.tokens[self.index - 1]
            self.refuse(text, position, "is not allowed here (expected between or in after it)")
        return left

    def sum(self) -> str:
        sql = self.product()
        while self.peek("+", "-"):
            sql = f"({sql} {self.take()[1]} {self.product()})"
        return sql

    def product(self) -> str:
        sql = self.unary()
        while self.peek("*", "/", "%"):
            sql = f"({sql} {self.take()[1]} {self.unary()})"
        return sql

    def unary(self) -> str:
        if self.peek("+", "-"):
            return f"({self.take()[1]}{self.unary()})"
        return self.primary()

    def primary(self) -> str:
        kind, text, position = self.take()
        if kind == "number":
            return text
        if kind == "string":
            return "'" + text[1:-1].replace("''", "'").replace("'", "''") + "'"
        if kind == "keyword" and text in {"true", "false", "null"}:
            return text.upper()
        if text == "(":
            sql = self.disjunction()
            self.expect(")")
            return sql
        if kind in {"word", "quoted"}:
            if self.peek("("):
                self.refuse(text, position, "is a function call, which is not allowed")
            name = text[1:-1].replace('""', '"') if kind == "quoted" else text
            if kind == "word" and name not in self.columns and name not in target_names(self.columns):
                if name.upper() in _sql_keywords():
                    self.refuse(text, position)
                raise ValueError(f"--where {self.where!r}: {_unknown(name, self.columns, self.hull)}")
            return _quote(resolve_column(name, self.columns, self.hull))
        self.refuse(text, position, "is not allowed" if kind == "other" else "is not allowed here")
        raise AssertionError  # refuse() always raises


def _sql_keywords() -> set[str]:
    """DuckDB's reserved and unreserved words (SELECT, CAST, EXISTS, ...), to name them as refused."""
    return {row[0].upper() for row in duckdb.sql("SELECT keyword_name FROM duckdb_keywords()").fetchall()}


def compile_filter(where: str, columns: Sequence[str], hull: bool = False) -> str:
    """``--where`` re-written as SQL over ``columns`` (target names resolved to their ``_mean``), after
    checking it holds only the allowed grammar; ``ValueError`` naming the first token that is not."""
    return _Filter(where, columns, hull).parse()


def query_predictions(path: Path, where: str | None = None, by: str = "e_form", kappa: float = 1.0,
                      hull: HullReference | None = None, include_out_of_domain: bool = False) -> tuple[pa.Table, int]:
    """Rows matching ``where`` ordered by ``by`` (ties by id) with ``rank`` and ``score`` columns, and
    the number of predictions before filtering; rows with ``in_domain = false`` only when asked."""
    connection = sealed_connection()
    connection.register("raw", prediction_dataset(path))
    if hull is None:
        connection.sql("CREATE VIEW predictions AS SELECT * FROM raw")
    else:
        _with_hull(connection, hull)
    columns = connection.table("predictions").columns
    expression, descending = order_expression(by, columns, kappa, hull is not None)
    condition = compile_filter(where, columns, hull is not None) if where else "TRUE"
    if "in_domain" in columns and not include_out_of_domain:
        condition = f"({condition}) AND in_domain IS NOT FALSE"
    sql = (f"SELECT *, {expression} AS score FROM predictions WHERE {condition} "
           f"ORDER BY score {'DESC' if descending else 'ASC'} NULLS LAST, id")
    try:
        table = pa.table(connection.sql(sql).arrow())
    except duckdb.Error as error:
        raise ValueError(f"cannot rank {path} with --where {where!r}: {str(error).splitlines()[0]}") from None
    total = connection.sql("SELECT count(*) FROM predictions").fetchall()[0][0]
    return table.add_column(0, "rank", pa.array(np.arange(1, table.num_rows + 1), pa.int64())), total
