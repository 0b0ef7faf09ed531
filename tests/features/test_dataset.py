"""Reading a feature store back gives exactly the tensors of a fresh featurization."""

from __future__ import annotations

from pathlib import Path

import torch
from torch_geometric.loader import DataLoader

from hybridmat.data.source_strings import open_source
from hybridmat.data.writers import write_structure_table
from hybridmat.features.dataset import CrystalDataset
from hybridmat.features.featurizer import FeaturizerSettings, featurize_records
from hybridmat.features.pipeline import featurize_to_store
from tests.features.test_store import _records

SETTINGS = FeaturizerSettings()  # the default (Ward 2016) composition set


def test_store_dataset_equals_fresh_featurization(tmp_path: Path) -> None:
    records = _records(12)
    source = tmp_path / "in.parquet"
    write_structure_table(records, source)
    featurize_to_store(open_source(str(source)), tmp_path / "store", spec=str(source), settings=SETTINGS,
                       shard_size=5, progress=False)
    stored = CrystalDataset.from_store(tmp_path / "store", ["e_form", "band_gap"], line_graph=True)
    fresh_batch, errors = featurize_records(records, SETTINGS, ("e_form", "band_gap"))
    fresh = CrystalDataset(fresh_batch, ["e_form", "band_gap"], line_graph=True)
    assert not errors and len(stored) == len(fresh) == 12
    for a, b in zip(stored, fresh):
        assert a.id == b.id
        assert a.composition.shape == (1, 145)
        for key in ("x", "edge_index", "edge_attr", "edge_vec", "line_edge_index", "angle_cos", "composition", "y"):
            assert torch.equal(a[key], b[key]), key


def test_dataset_subset_by_id_and_batching(tmp_path: Path) -> None:
    source = tmp_path / "in.parquet"
    write_structure_table(_records(8), source)
    featurize_to_store(open_source(str(source)), tmp_path / "store", spec=str(source), settings=SETTINGS,
                       progress=False)
    dataset = CrystalDataset.from_store(tmp_path / "store", ["e_form"], ids=["r-5", "r-1"], line_graph=True)
    assert dataset.ids == ["r-5", "r-1"]
    batch = next(iter(DataLoader(dataset, batch_size=2)))
    assert batch.y.shape == (2, 1) and batch.composition.shape == (2, 145)
    n_edges_first = int(dataset[0].edge_index.shape[1])
    second_lines = batch.line_edge_index[:, dataset[0].line_edge_index.shape[1]:]
    assert int(second_lines.min()) >= n_edges_first


def test_store_dataset_expands_bonds_with_the_stores_basis(tmp_path: Path) -> None:
    records = _records(4)
    source = tmp_path / "in.parquet"
    write_structure_table(records, source)
    settings = FeaturizerSettings(composition="magpie", cutoff=10.0)
    featurize_to_store(open_source(str(source)), tmp_path / "store", spec=str(source), settings=settings,
                       shard_size=5, progress=False)
    stored = CrystalDataset.from_store(tmp_path / "store", ["e_form"])
    assert stored.edge_basis == settings.edge_basis and stored[0].edge_attr.shape[1] == 51
    fresh = CrystalDataset(featurize_records(records, settings, ("e_form",))[0], ["e_form"])
    assert fresh.edge_basis == settings.edge_basis
    assert torch.equal(stored[0].edge_attr, fresh[0].edge_attr)
