"""The Python face: `import hybridmat` stays light; load, predict Structures/Atoms, rank like `hybridmat rank`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from pymatgen.io.ase import AseAtomsAdaptor
from typer.testing import CliRunner

import hybridmat
from hybridmat.cli import app
from hybridmat.data.records import StructureRecord
from hybridmat.data.writers import write_structure_table
from tests.conftest import perovskite, rocksalt


def test_import_is_light() -> None:
    code = "import sys, hybridmat; print(sorted({'torch', 'pymatgen', 'duckdb', 'ray'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_predict_structures_and_atoms_like_the_cli(tmp_path: Path) -> None:
    model = hybridmat.load_pretrained()
    assert model.calibrated and model.target_names == ("e_form", "band_gap")
    atoms = AseAtomsAdaptor.get_atoms(perovskite())
    with pytest.warns(UserWarning, match=r"1 of 3 structures were not predicted \(bad: expected a pymatgen"):
        frame = model.predict([rocksalt(), atoms, "not a structure"], ids=["nacl", "srtio3", "bad"])
    assert frame["id"].tolist() == ["nacl", "srtio3"]
    source = tmp_path / "in.parquet"
    write_structure_table([StructureRecord("nacl", rocksalt()), StructureRecord("srtio3", perovskite())], source)
    result = CliRunner().invoke(app, ["predict", str(source), "--out", str(tmp_path / "pred.parquet")])
    assert result.exit_code == 0, result.output
    cli = pq.read_table(tmp_path / "pred.parquet").to_pandas()
    assert list(frame.columns) == list(cli.columns)
    pd.testing.assert_frame_equal(frame, cli, check_exact=False, rtol=1e-5)
    predictions, errors = model.predict_with_errors(str(source))
    assert len(predictions) == 2 and len(errors) == 0


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"id": ["a", "b", "c"], "formula": ["Li2O", "LiO2", "NaCl"], "n_sites": [3, 3, 2],
                         "e_form_mean": [-2.0, -1.0, -3.0], "e_form_std": [0.1, 0.5, 0.1],
                         "in_domain": [True, True, False], "model_id": ["m"] * 3})


def test_rank_leaves_out_of_domain_rows_out_unless_asked(tmp_path: Path) -> None:
    ranked = hybridmat.rank(_frame(), by="lcb:e_form")
    assert ranked["id"].tolist() == ["a", "b"]
    assert ranked["score"].tolist() == pytest.approx([-2.1, -1.5])
    everything = hybridmat.rank(_frame(), by="e_form", include_out_of_domain=True, top=2)
    assert everything["id"].tolist() == ["c", "a"]
    path = tmp_path / "pred.parquet"
    _frame().to_parquet(path)
    result = CliRunner().invoke(app, ["rank", str(path), "--out", str(tmp_path / "rank")])
    assert result.exit_code == 0, result.output
    assert "1 rows left out" in result.output
    assert pq.read_table(tmp_path / "rank" / "ranked.parquet").column("id").to_pylist() == ["a", "b"]


def test_rank_with_a_hull_reports_known_phases(tmp_path: Path) -> None:
    reference = tmp_path / "phases.csv"
    reference.write_text("formula,e_form\nLi2O,-2.066\nLi2O2,-1.643\n")
    ranked = hybridmat.rank(_frame(), by="e_hull", hull_reference=str(reference), include_out_of_domain=True)
    rows = ranked.set_index("id")
    assert rows.loc["a", "hull_phases"] == 2 and not rows.loc["a", "hull_incomplete"]
    assert rows.loc["c", "hull_phases"] == 0 and rows.loc["c", "hull_incomplete"]
    assert np.isclose(rows.loc["a", "e_hull_mean"], -2.0 + 2.066)


def test_load_model_rejects_a_folder_without_members(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no member"):
        hybridmat.load_model(tmp_path)
