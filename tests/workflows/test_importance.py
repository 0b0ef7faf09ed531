"""Permutation importance singles out the block a predictor actually uses."""

from __future__ import annotations

import numpy as np

from hybridmat.data.records import StructureRecord
from hybridmat.features.dataset import CrystalDataset
from hybridmat.features.featurizer import FeaturizerSettings, featurize_records
from hybridmat.workflows.importance import permutation_importance
from tests.conftest import perovskite, rocksalt


def _dataset() -> CrystalDataset:
    records = []
    for i, (cation, anion) in enumerate([("Na", "Cl"), ("K", "Br"), ("Mg", "O"), ("Li", "F"), ("Ca", "S")]):
        records.append(StructureRecord(f"rs-{i}", rocksalt(4.2 + 0.3 * i, cation, anion)))
    records.append(StructureRecord("pv", perovskite()))
    batch, _ = featurize_records(records, FeaturizerSettings(composition="magpie"))
    n_atoms = np.array([g.num_nodes for g in batch.graphs], dtype=np.float64)
    batch.targets = {"y": batch.composition[:, 0] + n_atoms}
    return CrystalDataset(batch, ["y"])


def test_composition_only_predictor_has_zero_graph_importance() -> None:
    dataset = _dataset()
    n_atoms = np.array([g.num_nodes for g in dataset.batch.graphs], dtype=np.float64)

    def composition_only(ds: CrystalDataset) -> np.ndarray:
        return (ds.batch.composition[:, 0] + n_atoms)[:, None]

    def graph_only(ds: CrystalDataset) -> np.ndarray:
        return (dataset.batch.composition[:, 0] + [g.num_nodes for g in ds.batch.graphs])[:, None]

    comp = permutation_importance(composition_only, dataset, repeats=4)
    assert comp["graph"]["y"] == 0.0 and comp["composition"]["y"] > 0.0
    graph = permutation_importance(graph_only, dataset, repeats=4)
    assert graph["composition"]["y"] == 0.0 and graph["graph"]["y"] > 0.0
