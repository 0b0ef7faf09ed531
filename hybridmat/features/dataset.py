"""A torch dataset over featurized structures: PyG graph + composition tensor + targets per item."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import Dataset

from hybridmat.features.columns import table_to_batch
from hybridmat.features.featurizer import FeatureBatch, FeaturizerSettings
from hybridmat.features.graph import GaussianBasis
from hybridmat.features.pyg import CrystalGraphData, to_pyg
from hybridmat.features.store import FeatureStore


class CrystalDataset(Dataset):
    """Items are :class:`CrystalGraphData` with ``composition`` ``(1, F)``, ``y`` ``(1, T)`` and ``id``.

    Graph tensors (atom features, Gaussian distances, optional line graph) are built from the stored
    raw graph on first access and cached, so the same function produces stored and fresh features.
    The batch's ``edge_basis`` expands the bond lengths. Missing labels are NaN in ``y``; losses mask them.
    """

    def __init__(
        self, batch: FeatureBatch, target_names: Sequence[str] | None = None, line_graph: bool = False
    ) -> None:
        self.batch = batch
        self.target_names = list(batch.targets if target_names is None else target_names)
        missing = [name for name in self.target_names if name not in batch.targets]
        if missing:
            raise KeyError(f"targets {missing} are not in the features (have {sorted(batch.targets)})")
        self.line_graph = line_graph
        self.composition = torch.from_numpy(batch.composition.astype(np.float32))
        columns = [batch.targets[name] for name in self.target_names]
        self.targets = torch.from_numpy(np.stack(columns, axis=1).astype(np.float32)) if columns else None
        self._cache: dict[int, CrystalGraphData] = {}

    @classmethod
    def from_store(
        cls,
        store: FeatureStore | Path,
        target_names: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        line_graph: bool = False,
    ) -> CrystalDataset:
        """The rows of a feature store (optionally only ``ids``, in the order given), with its edge basis."""
        store = store if isinstance(store, FeatureStore) else FeatureStore(Path(store))
        return cls.from_table(store.read_table(), target_names, ids, line_graph, where=str(store.path),
                              edge_basis=store_edge_basis(store))

    @classmethod
    def from_table(
        cls,
        table: pa.Table,
        target_names: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        line_graph: bool = False,
        where: str = "the feature table",
        edge_basis: GaussianBasis | None = None,
    ) -> CrystalDataset:
        """Rows of an Arrow feature table (as a store holds them), optionally only ``ids`` in that order.

        ``edge_basis`` is the store's (:func:`store_edge_basis`); default: the 0-8 Å basis of older stores.
        """
        if ids is not None:
            position = {identifier: i for i, identifier in enumerate(table.column("id").to_pylist())}
            absent = [identifier for identifier in ids if identifier not in position]
            if absent:
                raise KeyError(f"{len(absent)} ids are not in {where} (e.g. {absent[:3]}); see its errors.parquet")
            table = table.take([position[identifier] for identifier in ids])
        batch = table_to_batch(table)
        return cls(batch if edge_basis is None else replace(batch, edge_basis=edge_basis), target_names, line_graph)

    @property
    def edge_basis(self) -> GaussianBasis:
        """The Gaussian expansion of bond lengths into ``edge_attr`` (the featurizer settings')."""
        return self.batch.edge_basis

    @property
    def ids(self) -> list[str]:
        """Material ids, in item order."""
        return self.batch.ids

    def __len__(self) -> int:
        return len(self.batch)

    def __getitem__(self, i: int) -> CrystalGraphData:
        data = self._cache.get(i)
        if data is None:
            data = to_pyg(self.batch.graphs[i], line_graph=self.line_graph, edge_basis=self.edge_basis)
            data.composition = self.composition[i : i + 1]
            if self.targets is not None:
                data.y = self.targets[i : i + 1]
            data.id = self.batch.ids[i]
            self._cache[i] = data
        return data


def store_edge_basis(store: FeatureStore) -> GaussianBasis:
    """The edge basis recorded in a store's manifest (a store written before it was a setting: 0-8 Å)."""
    return FeaturizerSettings.from_dict(store.manifest.get("featurizer") or {}).edge_basis
