"""The fast collate gives exactly the fields of PyG's ``Batch.from_data_list`` over the dataset's items."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from hybridmat.features.dataset import CrystalDataset
from hybridmat.features.graph import GaussianBasis
from hybridmat.training.collate import GraphTable
from tests.training.tiny_model import rocksalt_dataset

FIELDS = ("x", "atomic_numbers", "edge_index", "edge_attr", "edge_vec", "batch", "ptr", "composition", "y",
          "line_edge_index", "angle_cos")


def test_collate_equals_batch_from_data_list() -> None:
    dataset = rocksalt_dataset(24, line_graph=True)
    subset = torch.utils.data.Subset(torch.utils.data.Subset(dataset, range(4, 24)), [9, 0, 3, 17, 5])
    table = GraphTable.from_dataset(subset)
    index = np.array([4, 1, 0, 3])
    fast = table.collate(index)
    reference = Batch.from_data_list([subset[i] for i in index])
    for name in FIELDS:
        assert fast[name].dtype == reference[name].dtype, name
        assert torch.equal(fast[name], reference[name]) and fast[name].is_contiguous(), name
    assert fast.num_graphs == 4 and fast.id == reference.id


def test_batches_cover_the_order_and_skip_a_training_singleton() -> None:
    assert GraphTable.from_dataset(rocksalt_dataset(9)).line_ptr is None
    on_demand = GraphTable.from_dataset(rocksalt_dataset(9), line_graph=True)
    assert on_demand.line_ptr is not None
    table = GraphTable.from_dataset(rocksalt_dataset(9, line_graph=True), line_graph=False)
    assert table.line_ptr is None
    order = np.arange(9)[::-1]
    assert [b.id for b in table.batches(4, order)][-1] == ["rs-0"]
    assert sum(b.num_graphs for b in table.batches(4, order, drop_singleton=True)) == 8


def test_only_crystal_datasets() -> None:
    with pytest.raises(TypeError, match="CrystalDataset"):
        GraphTable.from_dataset([1, 2, 3])  # type: ignore[arg-type]


def test_collate_expands_bonds_with_the_datasets_basis() -> None:
    base = rocksalt_dataset(6)
    basis = GaussianBasis(6.0, 0.25)
    dataset = CrystalDataset(replace(base.batch, edge_basis=basis), base.target_names)
    fast = GraphTable.from_dataset(dataset).collate(np.arange(6))
    reference = Batch.from_data_list([dataset[i] for i in range(6)])
    assert fast.edge_attr.shape[1] == basis.size == 25
    assert torch.equal(fast.edge_attr, reference.edge_attr)
