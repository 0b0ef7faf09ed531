"""``hybridmat bench alignn`` on a tiny dataset, and the hand-over of our graphs to the official package."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hybridmat.bench.alignn import official_available, official_graphs
from hybridmat.cli import app
from hybridmat.data.records import StructureRecord
from hybridmat.data.writers import write_structure_table
from hybridmat.features.dataset import CrystalDataset
from hybridmat.features.featurizer import FeaturizerSettings, featurize_records
from hybridmat.training.collate import GraphTable
from tests.conftest import perovskite, rocksalt
from tests.features.test_store import _records


@pytest.mark.slow
def test_bench_alignn_measures_each_variant_and_the_heap_changes_no_number(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the benchmark featurizes into runs/features
    records = _records(12)
    write_structure_table(records, tmp_path / "tiny.parquet")
    ids = [record.id for record in records]
    (tmp_path / "splits.json").write_text(json.dumps({"cpu_small": {"train": ids[:8], "val": ids[8:]}}))
    out = tmp_path / "alignn.json"
    result = CliRunner().invoke(app, ["bench", "alignn", "--data", str(tmp_path / "tiny.parquet"), "--n", "8",
                                      "--n-val", "4", "--epochs", "2", "--threads", "1", "--json", str(out)])
    assert result.exit_code == 0, result.output
    rows = {row["label"]: row for row in json.loads(out.read_text())["rows"]}
    ours, before = rows["hybridmat"], rows["hybridmat, system heap (before)"]
    assert ours["n"] == 8 and ours["train_per_s"] > 0 and ours["infer_per_s"] > 0 and ours["peak_rss_mib"] > 0
    assert ours["val_mae"] == before["val_mae"]  # same seed, same batches: the heap setting changes no number
    assert ("alignn package" in rows) == official_available()


def test_official_graphs_carry_our_edges_and_angles() -> None:
    pytest.importorskip("alignn.models.alignn_atomwise_pure", reason="the official alignn package ([peers])")
    from alignn.torch_graph_builder import torch_bond_cosines

    strained = perovskite()
    strained.apply_strain([0.03, -0.02, 0.05])  # angles other than 90 and 180 degrees
    records = [StructureRecord("p", strained, {"e_form": -1.0}), StructureRecord("r", rocksalt(), {"e_form": -2.0})]
    dataset = CrystalDataset(featurize_records(records, FeaturizerSettings(), ["e_form"])[0], line_graph=True)
    batch = next(GraphTable.from_dataset(dataset).batches(2, np.arange(2)))
    graph, line, _ = official_graphs(batch)
    assert torch.equal(graph.src, batch.edge_index[0]) and torch.equal(graph.dst, batch.edge_index[1])
    assert graph.batch_num_nodes.tolist() == [5, 8]
    r = graph.edata["r"]
    torch.testing.assert_close(torch_bond_cosines(r[line.src], r[line.dst]), batch.angle_cos, atol=1e-6, rtol=0)
