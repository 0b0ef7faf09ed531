"""``--where`` cannot reach past the predictions: the grammar is parsed (layer 1) and DuckDB runs it on a
connection with external access disabled and its configuration locked (layer 2)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from hybridmat.ranking.query import compile_filter, query_predictions, sealed_connection
from tests.ranking.test_command import app  # noqa: F401  (the module-scoped typer app fixture)

COLUMNS = ["id", "formula", "n_sites", "e_form_mean", "e_form_std", "band_gap_mean", "band_gap_std", "model_id"]
PASSWD = ("TRUE)) SELECT column0 AS id, column0 AS formula, 1 AS n_sites, 0.0 AS e_form_mean, 0.0 AS e_form_std, "
          "0.0 AS band_gap_mean, 0.0 AS band_gap_std, 'x' AS model_id FROM read_csv('/etc/passwd', header=false, "
          "sep='\t') --")
HOSTNAME = "CAST((SELECT content FROM read_text('/etc/hostname')) AS INTEGER) = 1"


@pytest.mark.parametrize(("where", "sql"), [
    ("e_form < -0.5 and band_gap between 1 and 3",
     '(("e_form_mean" < (-0.5)) AND ("band_gap_mean" BETWEEN 1 AND 3))'),
    ("not (e_form_std >= 0.5 or n_sites != 4)", '(NOT (("e_form_std" >= 0.5) OR ("n_sites" <> 4)))'),
    ("formula in ('Li2O', 'it''s') and id is not null",
     "((\"formula\" IN ('Li2O', 'it''s')) AND (\"id\" IS NOT NULL))"),
    ("band_gap not between 0 and 1e1", '("band_gap_mean" NOT BETWEEN 0 AND 1e1)'),
    ('"e_form" - 2 * e_form_std % 3 / 1.5 == -.25',
     '(("e_form_mean" - (((2 * "e_form_std") % 3) / 1.5)) = (-.25))'),
    ("formula NOT IN ('O2') AND model_id IS NULL OR TRUE",
     "(((\"formula\" NOT IN ('O2')) AND (\"model_id\" IS NULL)) OR TRUE)"),
])
def test_allowed_grammar_is_rewritten_with_quoted_names(where: str, sql: str) -> None:
    assert compile_filter(where, COLUMNS) == sql  # every operator parenthesised: precedence is explicit


@pytest.mark.parametrize(("where", "token"), [
    (PASSWD, "')'"),                                                  # closes the generated WHERE early
    (HOSTNAME, "'CAST'"),                                             # a cast around a subquery
    ("e_form < (SELECT 1)", "'SELECT'"),                              # scalar subquery
    ("EXISTS (SELECT 1)", "'EXISTS'"),
    ("length(read_text('/etc/hostname')) > 0", "'length'"),           # function call
    ("e_form < abs(-1)", "'abs'"),
    ('"read_text"(\'/etc/hostname\') = 1', "'\"read_text\"'"),        # quoted name used as a function
    ("e_form < 0 -- comment", "'--'"),                                # comments
    ("e_form < 0 /* comment */", "'/*'"),
    ("formula = 'Li' || 'O'", "'||'"),                                # string concatenation
    ("e_form::VARCHAR = '1'", "'::'"),                                # casts
    ("e_form < 0; SELECT 1", "';'"),
    ("formula = $$Li$$", "'$'"),                                      # dollar quoting
    ("formula = 'unterminated", '"\'"'),                               # a string that never ends
    ("e_form < 0 and formula like 'Li%'", "'like'"),
    ("case when e_form < 0 then true end", "'case'"),
    ("e_form in (select 1)", "'select'"),
    ("e_form < 0 union select 1", "'union'"),
    ("* = 1", "'*'"),
])
def test_everything_else_is_refused_naming_the_token(where: str, token: str) -> None:
    with pytest.raises(ValueError, match="is not allowed|is a function call") as refused:
        compile_filter(where, COLUMNS)
    assert f"{token} at character" in str(refused.value)


def test_a_double_quoted_name_is_only_ever_a_column() -> None:
    """A quote inside a quoted name is doubled back, so it cannot close the identifier early."""
    with pytest.raises(ValueError, match="unknown name 'E'"):  # no escape-string prefix: E is a name
        compile_filter("formula = E'\\x41'", COLUMNS)
    with pytest.raises(ValueError, match="unknown name 'x\" OR 1=1 --'"):
        compile_filter('"x"" OR 1=1 --" = 1', COLUMNS)
    assert compile_filter('"e_form_std" = 1', COLUMNS) == '("e_form_std" = 1)'


@pytest.mark.parametrize("where", [PASSWD, HOSTNAME])
def test_the_reported_injections_fail_without_output(app, predictions_path: Path, tmp_path: Path,  # noqa: F811
                                                     where: str) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["rank", str(predictions_path), "--out", str(out), "--where", where])
    assert result.exit_code == 2
    assert "is not allowed" in result.output
    assert "root:" not in result.output and not out.exists()


def test_filters_still_select_rows(predictions_path: Path) -> None:
    table, _ = query_predictions(predictions_path, where="formula in ('Li2O', 'O2') or e_form_std > 0.4", by="id")
    assert table.column("id").to_pylist() == ["mp-a", "mp-b", "mp-f", "mp-g"]


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM read_csv('/etc/passwd', header=false, sep='\t')",
    "SELECT * FROM read_parquet('{predictions}')",
    "COPY (SELECT 1) TO '{directory}/leak.csv'",
    "ATTACH '{directory}/other.duckdb'",
])
def test_the_connection_opens_no_file(sql: str, predictions_path: Path, tmp_path: Path) -> None:
    connection = sealed_connection()
    with pytest.raises(duckdb.PermissionException, match="disabled by configuration"):
        connection.sql(sql.format(predictions=predictions_path, directory=tmp_path)).fetchall()
    assert not (tmp_path / "leak.csv").exists()


def test_the_connection_configuration_is_locked() -> None:
    connection = sealed_connection()
    for statement in ("SET enable_external_access = true", "RESET enable_external_access",
                      "SET lock_configuration = false"):
        with pytest.raises(duckdb.Error, match="locked"):
            connection.sql(statement)
    assert connection.sql("SELECT current_setting('enable_external_access')").fetchall() == [(False,)]


def test_shards_with_different_columns_are_united_by_name(tmp_path: Path) -> None:
    from tests.ranking.conftest import predictions_table, write_screen_directory

    directory = write_screen_directory(predictions_table(), tmp_path / "screen")
    first = directory / "shards" / "part-00000.parquet"
    pq.write_table(pq.read_table(first).drop_columns(["band_gap_mean", "band_gap_std"]), first)
    table, total = query_predictions(directory, where="band_gap is null", by="id")
    assert total == 7 and table.column("id").to_pylist() == ["mp-a", "mp-b", "mp-c"]
