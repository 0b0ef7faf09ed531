r"""ALIGNN: the Atomistic Line Graph Neural Network (Choudhary & DeCost, npj Comput. Mater. 7, 185, 2021).

Features and embeddings (as ALIGNN's ``alignn/models/alignn.py``)
-----------------------------------------------------------------
* atoms ``x``: the 92 CGCNN one-hot features -> ``MLP(92, hidden)``;
* bonds ``y``: the bond length ``d = |edge_vec|`` is recomputed in the model and expanded in
  ``distance_bins`` Gaussians :math:`\exp(-(d - \mu_k)^2 / \Delta)`, centres ``linspace(0,
  distance_max, distance_bins)`` and :math:`\Delta` their spacing (ALIGNN's ``RBFExpansion(0, 8, 80)``;
  the dataset's 41-column ``edge_attr`` is not used) -> ``MLP(distance_bins, embedding)`` ->
  ``MLP(embedding, hidden)``;
* angles ``z``: ``angle_cos`` of the bond pair k-j-i at ``j`` expanded the same way on [-1, 1] with
  ``angle_bins`` centres (ALIGNN's ``RBFExpansion(-1, 1, 40)``) -> ``MLP(angle_bins, embedding)`` ->
  ``MLP(embedding, hidden)``;

where ``MLP(a, b)`` is ``Linear -> BatchNorm1d -> SiLU``.

Layers
------
Each of the ``alignn_layers`` ALIGNN layers is (as in the paper; ALIGNN's ``alignn_order="triplet-pair"``)::

    m, z  = EGGC(line graph)(y, line_edge_index, z)   # bonds are nodes, bond pairs are edges
    x, y  = EGGC(atom graph)(x, edge_index, m)

followed by ``gcn_layers`` ``x, y = EGGC(atom graph)(x, edge_index, y)``, an average over each
crystal's atoms and a linear head. EGGC is :class:`~hybridmat.models.layers.eggc.EdgeGatedGraphConv`
(residual inside). Later ALIGNN releases run the atom-graph EGGC first ("pair-triplet"); we follow the
paper. Edge outputs nobody reads (``z`` of the last ALIGNN layer, ``y`` of the last atom-graph layer)
are not computed. Direction: messages flow ``edge_index[0] -> edge_index[1]`` (neighbour ``j`` ->
centre ``i``) and ``line_edge_index[0] -> line_edge_index[1]`` (``(k->j) -> (j->i)``), as ALIGNN's
``src -> dst``; our k-NN graph is directed where ALIGNN's is symmetrised.

Hyper-parameters (``build_model("alignn", ...)``; ALIGNN config name and the paper default in brackets):
``hidden`` (``hidden_features``, 256), ``embedding`` (``embedding_features``, 64), ``alignn_layers`` (4),
``gcn_layers`` (4), ``distance_bins`` (``edge_input_features``, 80), ``angle_bins``
(``triplet_input_features``, 40), ``distance_max`` (8.0 Å).

Cost: the line-graph tensors ``(T, hidden)`` dominate (``T`` = bond pairs, ~11 per bond with 12
neighbours). A 32-structure batch of MP crystals (~1,000 atoms, 12.5k bonds, 140k pairs) takes about
7 s per training step on 2 CPU cores with the paper defaults (~4.5 structures/s, ~8 GB peak memory)
and 0.25-0.6 s with ``hidden=64, alignn_layers=2, gcn_layers=2`` (~50-130 structures/s).
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor, nn
from torch_geometric.nn import global_mean_pool

from hybridmat.features.atom_features import N_ATOM_FEATURES
from hybridmat.features.graph import gaussian_expansion
from hybridmat.features.line_graph import angle_rbf
from hybridmat.models.base import NonNegativeInt, PositiveFloat, PositiveInt, PropertyModel, register
from hybridmat.models.layers.eggc import EdgeGatedGraphConv


def bond_length_basis(edge_vec: Tensor, distance_max: float, bins: int) -> Tensor:
    """ALIGNN's ``RBFExpansion`` of bond lengths: ``exp(-(d - c_k)^2 / spacing)`` on ``bins`` centres over
    ``[0, distance_max]``, i.e. a Gaussian width of ``sqrt(spacing)`` in our convention. ``(E, bins)``."""
    spacing = distance_max / (bins - 1)
    return gaussian_expansion(edge_vec.norm(dim=1), 0.0, distance_max, spacing, math.sqrt(spacing))


def mlp_layer(in_features: int, out_features: int) -> nn.Sequential:
    """ALIGNN's ``MLPLayer``: ``Linear -> BatchNorm1d -> SiLU``."""
    return nn.Sequential(nn.Linear(in_features, out_features), nn.BatchNorm1d(out_features), nn.SiLU())


class ALIGNNConv(nn.Module):
    r"""One ALIGNN layer: an EGGC on the line graph, then an EGGC on the atom graph.

    .. math::
        m, z' = \mathrm{EGGC}_{L(g)}(y, z), \qquad x', y' = \mathrm{EGGC}_{g}(x, m)

    Shapes: ``x`` ``(N, F)``, ``y`` ``(E, F)``, ``z`` ``(T, F)``, ``edge_index`` ``(2, E)``,
    ``line_edge_index`` ``(2, T)`` (indices into edges) :math:`\to` ``(x', y', z')``.

    Args:
        channels: ``F``.
        update_angles: compute ``z'`` (else ``z`` is returned unchanged).
        update_bonds: compute ``y'`` (else ``m`` is returned in its place).
    """

    def __init__(self, channels: int, update_angles: bool = True, update_bonds: bool = True) -> None:
        super().__init__()
        self.line_conv = EdgeGatedGraphConv(channels, update_edges=update_angles)
        self.atom_conv = EdgeGatedGraphConv(channels, update_edges=update_bonds)

    def reset_parameters(self) -> None:
        """Reinitialise both convolutions."""
        self.line_conv.reset_parameters()
        self.atom_conv.reset_parameters()

    def forward(
        self, x: Tensor, y: Tensor, z: Tensor, edge_index: Tensor, line_edge_index: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Return the updated ``(x, y, z)``."""
        m, z = self.line_conv(y, line_edge_index, z)
        x, y = self.atom_conv(x, edge_index, m)
        return x, y, z


@register("alignn")
class ALIGNN(PropertyModel):
    """ALIGNN on a batch of crystal graphs with line graphs; see the module docstring for the architecture."""

    needs_line_graph = True

    def __init__(
        self,
        *,
        n_targets: int = 1,
        composition_dim: int = 0,
        hidden: PositiveInt = 256,
        embedding: PositiveInt = 64,
        alignn_layers: NonNegativeInt = 4,
        gcn_layers: NonNegativeInt = 4,
        distance_bins: PositiveInt = 80,
        angle_bins: PositiveInt = 40,
        distance_max: PositiveFloat = 8.0,
    ) -> None:
        if alignn_layers < 0 or gcn_layers < 0 or alignn_layers + gcn_layers == 0:
            raise ValueError(
                "ALIGNN needs alignn_layers, gcn_layers >= 0 and at least one layer, "
                f"got {alignn_layers}, {gcn_layers}"
            )
        if distance_bins < 2 or angle_bins < 2:
            raise ValueError(f"distance_bins and angle_bins must be >= 2, got {distance_bins}, {angle_bins}")
        super().__init__(
            n_targets=n_targets,
            composition_dim=composition_dim,
            hidden=hidden,
            embedding=embedding,
            alignn_layers=alignn_layers,
            gcn_layers=gcn_layers,
            distance_bins=distance_bins,
            angle_bins=angle_bins,
            distance_max=distance_max,
        )
        self.hidden = hidden  # width of embed(); fusion and multi-task heads read it
        self.distance_bins = distance_bins
        self.angle_bins = angle_bins
        self.distance_max = distance_max
        self.atom_embedding = mlp_layer(N_ATOM_FEATURES, hidden)
        self.edge_embedding = nn.Sequential(mlp_layer(distance_bins, embedding), mlp_layer(embedding, hidden))
        self.angle_embedding = (
            nn.Sequential(mlp_layer(angle_bins, embedding), mlp_layer(embedding, hidden))
            if alignn_layers
            else None
        )
        last = alignn_layers - 1
        self.alignn_layers = nn.ModuleList(
            ALIGNNConv(hidden, update_angles=k < last, update_bonds=k < last or gcn_layers > 0)
            for k in range(alignn_layers)
        )
        self.gcn_layers = nn.ModuleList(
            EdgeGatedGraphConv(hidden, update_edges=k < gcn_layers - 1) for k in range(gcn_layers)
        )
        self.fc = nn.Linear(hidden, n_targets)

    def reset_parameters(self) -> None:
        """Reinitialise every learnable layer."""
        for module in self.modules():
            if module is not self and isinstance(module, (nn.Linear, nn.BatchNorm1d)):
                module.reset_parameters()

    def embed(self, batch: Any) -> Tensor:
        """Pooled crystal embedding ``(num_graphs, hidden)``: the mean of the final atom features."""
        edge_index = batch.edge_index
        x = self.atom_embedding(batch.x)
        y = self.edge_embedding(bond_length_basis(batch.edge_vec, self.distance_max, self.distance_bins))
        if self.angle_embedding is not None:
            if "line_edge_index" not in batch:
                raise ValueError(
                    "ALIGNN needs line graphs: build the dataset with CrystalDataset(..., line_graph=True)"
                )
            angle_basis = angle_rbf(batch.angle_cos, self.angle_bins, math.sqrt(2.0 / (self.angle_bins - 1)))
            z = self.angle_embedding(angle_basis)
            for layer in self.alignn_layers:
                x, y, z = layer(x, y, z, edge_index, batch.line_edge_index)
        for conv in self.gcn_layers:
            x, y = conv(x, edge_index, y)
        return global_mean_pool(x, batch.batch, size=batch.num_graphs)

    def forward(self, batch: Any) -> Tensor:
        """Predictions ``(num_graphs, n_targets)`` in normalised target units."""
        return self.fc(self.embed(batch))
