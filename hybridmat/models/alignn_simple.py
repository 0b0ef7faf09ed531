r"""The "simplified ALIGNN": ALIGNN's embeddings and readout, message passing on the atom graph only.

It exists to measure what the line graph (bond angles) adds: with the same atom and bond embeddings,
the same number of atom-graph updates, mean pooling and a linear head as
:class:`~hybridmat.models.alignn.ALIGNN`, the only differences are that there is no line graph (no
angles, bond features are never updated) and the convolution is
:class:`~hybridmat.models.layers.mlp_message.MLPMessageConv` (MLP messages, no edge gating).

.. math::
    \mathbf{x}^{(0)} = \mathrm{MLP}(\mathbf{x}), \quad
    \mathbf{e} = \mathrm{MLP}(\mathrm{MLP}(\mathrm{RBF}(d_{ij}))), \quad
    \mathbf{x}^{(l+1)} = \mathrm{MLPMessageConv}(\mathbf{x}^{(l)}, \mathbf{e}), \quad
    \hat y = W\,\mathrm{mean}_{i \in G}\, \mathbf{x}^{(L)}_i + \mathbf{b}

with ``MLP(a, b) = Linear -> BatchNorm1d -> SiLU`` and ``RBF`` ALIGNN's Gaussian expansion of the bond
length (``distance_bins`` centres on [0, ``distance_max``]); see :mod:`hybridmat.models.alignn`.

Hyper-parameters: ``hidden`` (256), ``embedding`` (64), ``n_layers`` (8, ALIGNN's 4 ALIGNN + 4 GCN
atom-graph updates), ``distance_bins`` (80), ``distance_max`` (8.0 Å). To compare with an ALIGNN of
``alignn_layers + gcn_layers`` atom-graph updates, set ``n_layers`` to that sum.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch_geometric.nn import global_mean_pool

from hybridmat.features.atom_features import N_ATOM_FEATURES
from hybridmat.models.alignn import bond_length_basis, mlp_layer
from hybridmat.models.base import PositiveFloat, PositiveInt, PropertyModel, register
from hybridmat.models.layers.mlp_message import MLPMessageConv


@register("alignn_simple")
class SimpleALIGNN(PropertyModel):
    """ALIGNN without the line graph; see the module docstring. Output: ``(B, n_targets)``."""

    def __init__(
        self,
        *,
        n_targets: int = 1,
        composition_dim: int = 0,
        hidden: PositiveInt = 256,
        embedding: PositiveInt = 64,
        n_layers: PositiveInt = 8,
        distance_bins: PositiveInt = 80,
        distance_max: PositiveFloat = 8.0,
    ) -> None:
        if n_layers < 1:
            raise ValueError(f"alignn_simple needs at least one layer, got n_layers={n_layers}")
        if distance_bins < 2:
            raise ValueError(f"distance_bins must be >= 2, got {distance_bins}")
        super().__init__(n_targets=n_targets, composition_dim=composition_dim, hidden=hidden,
                         embedding=embedding, n_layers=n_layers, distance_bins=distance_bins,
                         distance_max=distance_max)
        self.hidden = hidden  # width of embed()
        self.distance_bins = distance_bins
        self.distance_max = distance_max
        self.atom_embedding = mlp_layer(N_ATOM_FEATURES, hidden)
        self.edge_embedding = nn.Sequential(mlp_layer(distance_bins, embedding), mlp_layer(embedding, hidden))
        self.convs = nn.ModuleList(MLPMessageConv(hidden) for _ in range(n_layers))
        self.fc = nn.Linear(hidden, n_targets)

    def embed(self, batch: Any) -> Tensor:
        """Pooled crystal embedding ``(num_graphs, hidden)``: the mean of the final atom features."""
        edge_attr = self.edge_embedding(bond_length_basis(batch.edge_vec, self.distance_max, self.distance_bins))
        x = self.atom_embedding(batch.x)
        for conv in self.convs:
            x = conv(x, batch.edge_index, edge_attr)
        return global_mean_pool(x, batch.batch, size=batch.num_graphs)

    def forward(self, batch: Any) -> Tensor:
        """Predictions ``(num_graphs, n_targets)`` in normalised target units."""
        return self.fc(self.embed(batch))
