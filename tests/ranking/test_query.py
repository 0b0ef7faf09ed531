"""Filtering and ordering predictions in target names, over both input shapes."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybridmat.ranking.query import order_expression, query_predictions

WHERE = "e_form < -0.5 and band_gap between 1 and 3"


def _ids(path: Path, **options: object) -> list[str]:
    return query_predictions(path, **options)[0].column("id").to_pylist()


def test_where_and_lcb_order_with_id_tie_break(predictions_path: Path) -> None:
    table, total = query_predictions(predictions_path, where=WHERE, by="lcb:e_form")
    assert total == 7
    assert table.column("id").to_pylist() == ["mp-b", "mp-c", "mp-e", "mp-f"]
    assert table.column("score").to_pylist() == [-1.25, -1.25, -1.25, -1.125]
    assert table.column("rank").to_pylist() == [1, 2, 3, 4]
    assert "e_form" not in table.column_names  # the alias is for queries only


def test_kappa_mean_and_descending_orders(predictions_path: Path) -> None:
    assert _ids(predictions_path, where=WHERE, by="lcb:e_form", kappa=2.0) == ["mp-b", "mp-f", "mp-c", "mp-e"]
    assert _ids(predictions_path, where=WHERE, by="e_form") == ["mp-e", "mp-c", "mp-b", "mp-f"]
    assert _ids(predictions_path, where=WHERE, by="-band_gap") == ["mp-b", "mp-c", "mp-e", "mp-f"]
    # ucb, kappa 3: b 2.5+0.75, c 2+0.375, e 1.5+0.75, f 1+1.5 -> descending
    assert _ids(predictions_path, where=WHERE, by="ucb:band_gap", kappa=3.0) == ["mp-b", "mp-f", "mp-c", "mp-e"]


def test_std_columns_and_negative_band_gaps_are_queryable(predictions_path: Path) -> None:
    assert _ids(predictions_path, where="band_gap < 0") == ["mp-d"]
    assert _ids(predictions_path, where="e_form_std >= 0.5", by="id") == ["mp-b", "mp-f"]


def test_unknown_column_lists_the_available_names(predictions_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown name 'e_fromm'; available: e_form, band_gap, .*e_form_std"):
        query_predictions(predictions_path, where="e_fromm < -0.5")
    with pytest.raises(ValueError, match="e_hull needs --hull-reference"):
        query_predictions(predictions_path, by="e_hull")
    with pytest.raises(ValueError, match="';' at character 5 is not allowed"):
        query_predictions(predictions_path, where="true; select 1")


def test_bounds_need_a_target() -> None:
    columns = ["id", "formula", "e_form_mean", "e_form_std", "n_sites"]
    assert order_expression("lcb:e_form", columns, 0.5) == ('"e_form_mean" - 0.5 * "e_form_std"', False)
    with pytest.raises(ValueError, match="bounds need a target"):
        order_expression("ucb:n_sites", columns, 1.0)
    with pytest.raises(ValueError, match="lcb: or ucb:"):
        order_expression("mean:e_form", columns, 1.0)


def test_a_directory_without_shards_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no shards/part-"):
        query_predictions(tmp_path)
