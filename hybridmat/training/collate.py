"""Fast batching of crystal graphs straight from a dataset's arrays, without ``Batch.from_data_list``.

:class:`GraphTable` concatenates the raw graphs of a :class:`~hybridmat.features.dataset.CrystalDataset`
once (atomic numbers, local ``edge_index``, bond vectors and lengths, optional line graph) with
per-structure offsets. :meth:`GraphTable.collate` then builds a batch with a handful of vectorised
gathers: node/edge/line-edge ranges of the chosen structures, plus the offsets PyG would add.

Why: PyG's ``DataLoader`` collates a list of ``Data`` objects per step (``Batch.from_data_list``
walks every attribute of every item in Python), and the dataset builds each item with ``to_pyg`` on first
access; on a small CPU machine that costs as much as CGCNN's forward and backward pass. Here the
expanded features are computed per batch with the dataset's own functions (``x`` = the atom feature
table row of each atom, ``edge_attr`` = the dataset's :class:`~hybridmat.features.graph.GaussianBasis` of
the bond lengths), which are element-wise, so every field equals what ``Batch.from_data_list`` of the
dataset's items gives, bit for bit, while the table stores ~45x fewer bytes per edge than cached items.

A batch is a PyG ``Batch`` with ``x``, ``atomic_numbers``, ``edge_index``, ``edge_attr``, ``edge_vec``,
``batch``, ``ptr``, ``composition``, ``y`` (if the dataset has targets), ``id`` and, for line graphs,
``line_edge_index`` (offset by the edges before each structure) and ``angle_cos``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Subset
from torch_geometric.data import Batch

from hybridmat.features.atom_features import atom_feature_table, atom_features
from hybridmat.features.dataset import CrystalDataset
from hybridmat.features.graph import GaussianBasis


def _ptr(counts: list[int]) -> np.ndarray:
    """``[0, c0, c0 + c1, ...]`` as int64."""
    return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` over ``(starts, counts)``."""
    ends = np.cumsum(counts)
    return np.arange(ends[-1] if len(ends) else 0) + np.repeat(starts - (ends - counts), counts)


def resolve_dataset(dataset: Dataset) -> tuple[CrystalDataset, list[int]]:
    """The underlying :class:`CrystalDataset` and the item indices of ``dataset`` (nested ``Subset``s)."""
    indices: list[int] | None = None
    while isinstance(dataset, Subset):
        outer = list(dataset.indices)
        indices = outer if indices is None else [outer[i] for i in indices]
        dataset = dataset.dataset
    if not isinstance(dataset, CrystalDataset):
        raise TypeError(
            f"the trainer batches CrystalDataset (or Subset of one), got {type(dataset).__name__}; "
            "build it with CrystalDataset(featurize_records(...)[0]) or CrystalDataset.from_store(...)"
        )
    return dataset, list(range(len(dataset))) if indices is None else indices


@dataclass(frozen=True, eq=False)
class GraphTable:
    """All structures of a dataset as concatenated numpy arrays; ``*_ptr`` are ``(n + 1,)`` offsets.

    Collation works on numpy arrays and wraps the results with ``torch.from_numpy``: the ops are small,
    and torch would run some of them as OpenMP parallel regions, whose start-up cost dominates at this
    size (and explodes, ~8 ms per op, when the cores are shared with other processes).
    """

    ids: list[str]
    target_names: list[str]
    atomic_numbers: np.ndarray  # (N,) int64
    edge_index: np.ndarray  # (2, E) int32, local to each structure (half the bytes; int64 in a batch)
    edge_vec: np.ndarray  # (E, 3) float32
    distances: np.ndarray  # (E,) float32, CrystalGraph.distances
    composition: np.ndarray  # (n, F) float32
    y: np.ndarray | None  # (n, T) float32, NaN = missing
    node_ptr: np.ndarray
    edge_ptr: np.ndarray
    edge_basis: GaussianBasis  # the dataset's expansion of bond lengths into edge_attr
    line_edge_index: np.ndarray | None = None  # (2, L) int32, local edge indices of each structure
    angle_cos: np.ndarray | None = None  # (L,) float32
    line_ptr: np.ndarray | None = None

    @classmethod
    def from_dataset(cls, dataset: Dataset, line_graph: bool | None = None) -> GraphTable:
        """Concatenate a ``CrystalDataset`` or ``Subset``; ``line_graph`` defaults to the dataset's."""
        base, indices = resolve_dataset(dataset)
        line_graph = base.line_graph if line_graph is None else line_graph
        if not indices:
            raise ValueError("cannot batch an empty dataset: it has no structures")
        graphs = [base.batch.graphs[i] for i in indices]
        atomic_numbers = np.concatenate([g.atomic_numbers for g in graphs]).astype(np.int64)
        atom_features(np.unique(atomic_numbers))  # raises, naming the atomic numbers, if any has no features
        lines: dict[str, np.ndarray] = {}
        if line_graph:
            from hybridmat.features.line_graph import build_line_graph

            pairs, cosines = [], []
            for graph in graphs:  # ~k^2 pairs per atom: keep only the compact arrays of each structure
                line = build_line_graph(graph)
                pairs.append(line.edge_index.astype(np.int32))
                cosines.append(line.cos_angle.astype(np.float32))
            lines = {
                "line_edge_index": np.concatenate(pairs, axis=1),
                "angle_cos": np.concatenate(cosines),
                "line_ptr": _ptr([p.shape[1] for p in pairs]),
            }
        return cls(
            ids=[base.batch.ids[i] for i in indices],
            target_names=list(base.target_names),
            atomic_numbers=atomic_numbers,
            edge_index=np.concatenate([g.edge_index.astype(np.int32) for g in graphs], axis=1),
            edge_vec=np.concatenate([g.edge_vec for g in graphs]).astype(np.float32),
            distances=np.concatenate([g.distances for g in graphs]),
            composition=base.composition.numpy()[indices],
            y=None if base.targets is None else base.targets.numpy()[indices],
            node_ptr=_ptr([g.num_nodes for g in graphs]),
            edge_ptr=_ptr([g.num_edges for g in graphs]),
            edge_basis=base.edge_basis,
            **lines,
        )

    def __len__(self) -> int:
        return len(self.ids)

    def collate(self, index: np.ndarray) -> Batch:
        """The batch of structures ``index`` (1-D int array), in that order."""
        index = np.asarray(index, dtype=np.int64)
        n_nodes = self.node_ptr[index + 1] - self.node_ptr[index]
        n_edges = self.edge_ptr[index + 1] - self.edge_ptr[index]
        ptr = _ptr(n_nodes)
        edges = _ranges(self.edge_ptr[index], n_edges)
        atomic_numbers = self.atomic_numbers[_ranges(self.node_ptr[index], n_nodes)]
        edge_index = np.take(self.edge_index, edges, axis=1) + np.repeat(ptr[:-1], n_edges)  # int64
        batch = Batch(
            x=torch.from_numpy(atom_feature_table()[atomic_numbers]),
            atomic_numbers=torch.from_numpy(atomic_numbers),
            edge_index=torch.from_numpy(edge_index),
            edge_attr=torch.from_numpy(self.edge_basis.expand(self.distances[edges])),
            edge_vec=torch.from_numpy(self.edge_vec[edges]),
            batch=torch.from_numpy(np.repeat(np.arange(len(index)), n_nodes)),
            ptr=torch.from_numpy(ptr),
            composition=torch.from_numpy(self.composition[index]),
            id=[self.ids[i] for i in index.tolist()],
        )
        if self.y is not None:
            batch.y = torch.from_numpy(self.y[index])
        if self.line_ptr is not None and self.line_edge_index is not None and self.angle_cos is not None:
            n_lines = self.line_ptr[index + 1] - self.line_ptr[index]
            lines = _ranges(self.line_ptr[index], n_lines)
            edge_offset = np.repeat(_ptr(n_edges)[:-1], n_lines)
            line_edge_index = np.take(self.line_edge_index, lines, axis=1) + edge_offset
            batch.line_edge_index = torch.from_numpy(line_edge_index)
            batch.angle_cos = torch.from_numpy(self.angle_cos[lines])
        batch._num_graphs = len(index)
        return batch

    def batches(
        self, batch_size: int, order: np.ndarray | None = None, drop_singleton: bool = False
    ) -> Iterator[Batch]:
        """Batches of ``batch_size`` structures in ``order`` (default: dataset order).

        ``drop_singleton`` skips a final batch of one structure (training only: batch norm over one
        graph's pooled vector fails, and with shuffling a different structure is left out each epoch).
        """
        order = np.arange(len(self)) if order is None else np.asarray(order, dtype=np.int64)
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            if drop_singleton and len(index) == 1 and len(order) > 1:
                return
            yield self.collate(index)
