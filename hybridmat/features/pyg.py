"""Crystal graphs as PyTorch Geometric ``Data``: the tensors models consume.

Kept apart from :mod:`hybridmat.features.graph` so that featurization (graph building in a CPU worker)
never imports torch.
"""

from __future__ import annotations

import torch
from torch_geometric.data import Data

from hybridmat.features.atom_features import atom_features
from hybridmat.features.graph import CrystalGraph, GaussianBasis


class CrystalGraphData(Data):
    """PyG ``Data`` whose ``line_edge_index`` (indices into edges) increments by ``num_edges`` in a batch."""

    def __inc__(self, key: str, value: object, *args: object, **kwargs: object) -> object:
        if key == "line_edge_index":
            return self.edge_index.size(1)
        return super().__inc__(key, value, *args, **kwargs)


def to_pyg(
    graph: CrystalGraph, *, line_graph: bool = False, edge_basis: GaussianBasis | None = None
) -> CrystalGraphData:
    """Tensors for PyG: ``x`` (N, 92), ``atomic_numbers``, ``edge_index``, ``edge_attr``, ``edge_vec``.

    ``edge_attr`` is ``edge_basis`` applied to the bond lengths, ``(E, edge_basis.size)`` (default: 41
    Gaussians over 0-8 Å when ``None``; pass the featurizer settings' ``edge_basis``).
    With ``line_graph=True`` the ALIGNN fields are added:
    ``line_edge_index`` (2, T) int64 indexing edges and ``angle_cos`` (T,) float32. The angle basis is
    left to the model (``angle_rbf(data.angle_cos)`` accepts tensors): stored per structure it would be
    T x 40 floats, about 12 times the size of ``edge_attr``.
    """
    data = CrystalGraphData(
        x=torch.from_numpy(atom_features(graph.atomic_numbers)),
        atomic_numbers=torch.tensor(graph.atomic_numbers),
        edge_index=torch.tensor(graph.edge_index),
        edge_attr=torch.from_numpy((edge_basis or GaussianBasis()).expand(graph.distances)),
        edge_vec=torch.tensor(graph.edge_vec),
        num_nodes=graph.num_nodes,
    )
    if line_graph:
        # Imported here because line_graph.py builds on CrystalGraph from this module.
        from hybridmat.features.line_graph import build_line_graph

        lg = build_line_graph(graph)
        data.line_edge_index = torch.from_numpy(lg.edge_index)
        data.angle_cos = torch.from_numpy(lg.cos_angle)
    return data
