"""The funnel's pieces: combining two estimates, the final table, the job-file section, E_hull per estimate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hybridmat.config import JobFileError, load_job, parse_job
from hybridmat.ranking.hull import HullReference
from hybridmat.ranking.query import query_predictions
from hybridmat.workflows.funnel import combine_estimates, combine_funnel


def test_agreeing_estimates_narrow_and_disagreeing_ones_widen() -> None:
    mean, std = combine_estimates([-1.0, -1.0], [0.1, 0.1], [-1.0, 0.0], [0.1, 0.1])
    assert mean[0] == pytest.approx(-1.0) and std[0] == pytest.approx(0.1)
    assert mean[1] == pytest.approx(-0.5)
    assert std[1] == pytest.approx(np.sqrt(0.01 + 0.25 * 1.0))  # mixture: the 1 eV/atom gap dominates
    mean, std = combine_estimates([-1.0], [0.1], [-2.0], [0.3])  # the tighter estimate weighs 9x more
    assert mean[0] == pytest.approx(-1.1)


def test_a_missing_second_estimate_leaves_the_first() -> None:
    mean, std = combine_estimates([-1.0], [0.2], [np.nan], [0.1])
    assert (mean[0], std[0]) == (-1.0, 0.2)


def _funnel_inputs() -> tuple[pa.Table, pa.Table, pa.Table]:
    chosen = pa.table({"rank": [1, 2], "id": ["a", "b"], "index": [7, 3], "formula": ["NaCl", "LiF"],
                       "e_form_mean": [-1.5, -2.0], "e_form_std": [0.2, 0.2],
                       "band_gap_mean": [4.0, 9.0], "band_gap_std": [1.0, 1.0]})
    relaxed = pa.table({"id": ["b", "a"], "energy_per_atom": [-4.8, -3.4], "potential_e_form": [-3.0, -2.0],
                        "steps": [12, 30], "converged": [True, False], "max_force": [0.01, 0.2],
                        "volume_change": [-0.1, 0.05]})
    rescored = pa.table({"index": [0, 1], "id": ["b", "a"], "formula": ["LiF", "NaCl"],
                         "e_form_mean": [-3.0, -1.8], "e_form_std": [0.1, 0.1],
                         "band_gap_mean": [8.5, 4.5], "band_gap_std": [0.5, 0.5], "in_domain": [True, True]})
    return chosen, relaxed, rescored


def test_final_table_carries_every_estimate_in_stage1_order() -> None:
    table = combine_funnel(*_funnel_inputs(), potential_std=0.1).to_pylist()
    assert [row["id"] for row in table] == ["a", "b"]
    a = table[0]
    assert a["e_form_unrelaxed_mean"] == -1.5 and a["e_form_relaxed_mean"] == -1.8
    assert a["e_form_potential_mean"] == -2.0 and a["e_form_potential_std"] == 0.1
    assert a["e_form_gap"] == pytest.approx(0.2) and a["e_form_mean"] == pytest.approx(-1.9)
    assert a["band_gap_mean"] == 4.5 and a["band_gap_unrelaxed_mean"] == 4.0
    assert a["converged"] is False and a["steps"] == 30 and a["stage1_rank"] == 1


def test_without_a_potential_std_the_combination_is_the_relaxed_ensemble() -> None:
    table = combine_funnel(*_funnel_inputs(), potential_std=None).to_pylist()
    assert table[1]["e_form_mean"] == -3.0 and table[1]["e_form_std"] == 0.1


def test_rank_adds_an_e_hull_per_formation_energy_estimate(tmp_path: Path) -> None:
    path = tmp_path / "funnel.parquet"
    pq.write_table(combine_funnel(*_funnel_inputs(), potential_std=0.1), path)
    hull = HullReference(["NaCl", "LiF"], [-2.0, -3.0])
    table, _ = query_predictions(path, by="e_hull_potential", hull=hull)
    assert table.column("id").to_pylist() == ["a", "b"]
    assert table.column("e_hull_potential_mean").to_pylist() == pytest.approx([0.0, 0.0])
    assert table.column("e_hull_relaxed_mean").to_pylist() == pytest.approx([0.2, 0.0])
    assert {"e_hull_mean", "e_hull_unrelaxed_mean"} <= set(table.column_names)


def test_screen_relax_section_is_validated_and_resolved(tmp_path: Path) -> None:
    job_file = tmp_path / "screen.yaml"
    job_file.write_text("screen:\n  source: c.parquet\n  relax:\n    top_k: 5\n    hull_reference: phases.csv\n")
    relax = load_job(job_file).screen.relax
    assert relax.potential == "chgnet" and relax.top_k == 5 and relax.settings().fmax == 0.05
    assert relax.hull_reference == str((tmp_path / "phases.csv").resolve())
    with pytest.raises(JobFileError, match="unknown potential 'mace'"):
        parse_job({"screen": {"source": "c.parquet", "relax": {"potential": "mace"}}})
    with pytest.raises(JobFileError, match="screen.relax.fmax"):
        parse_job({"screen": {"source": "c.parquet", "relax": {"fmax": 0}}})
