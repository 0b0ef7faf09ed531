r"""Multi-task network with a graph-attention trunk (MEGNet-style: one shared trunk, one head per target).

.. math::
    \mathbf{x}^{(0)} = \mathbf{x} W_e + \mathbf{b}_e, \quad
    \mathbf{x}^{(l+1)} = \mathrm{GATv2Block}(\mathbf{x}^{(l)}, \mathbf{e}), \quad
    \hat Y_{:, t} = \mathrm{MLP}_t\big(\mathrm{mean}_{i \in G}\, \mathbf{x}^{(L)}_i\big), \quad t = 1 \dots T

The trunk is :class:`~hybridmat.models.layers.gatv2_block.GATv2Block` (multi-head GATv2 attention whose
scores read the bond's Gaussian distances ``edge_attr``); the heads are
:class:`~hybridmat.models.multitask.PerTargetHeads`, as in ``multitask``. The loss options (fixed λ or
learned uncertainty weights, masked missing labels) are the trainer's
:class:`~hybridmat.models.losses.MultiTaskLoss` settings and apply unchanged.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch_geometric.nn import global_mean_pool

from hybridmat.features.atom_features import N_ATOM_FEATURES
from hybridmat.models.base import NonNegativeInt, PositiveInt, PropertyModel, register
from hybridmat.models.cgcnn import EDGE_DIM
from hybridmat.models.layers.gatv2_block import GATv2Block
from hybridmat.models.multitask import PerTargetHeads


@register("multitask_gat")
class MultiTaskGAT(PropertyModel):
    """Shared GATv2 trunk + one softplus MLP head per target; see the module docstring.

    Hyper-parameters: ``hidden`` (64, atom width), ``n_layers`` (3), ``heads`` (4, must divide
    ``hidden``), ``head_hidden`` (128, per head) and ``n_head_layers`` (1), the last two as ``multitask``.
    Output: ``(B, n_targets)`` in normalised target units.
    """

    def __init__(self, *, n_targets: int = 1, composition_dim: int = 0, hidden: PositiveInt = 64,
                 n_layers: PositiveInt = 3, heads: PositiveInt = 4, head_hidden: PositiveInt = 128,
                 n_head_layers: NonNegativeInt = 1,
                 atom_dim: PositiveInt = N_ATOM_FEATURES, edge_dim: PositiveInt = EDGE_DIM) -> None:
        if n_layers < 1:
            raise ValueError(f"multitask_gat needs at least one attention layer, got n_layers={n_layers}")
        super().__init__(n_targets=n_targets, composition_dim=composition_dim, hidden=hidden,
                         n_layers=n_layers, heads=heads, head_hidden=head_hidden, n_head_layers=n_head_layers,
                         atom_dim=atom_dim, edge_dim=edge_dim)
        self.hidden = hidden  # width of embed()
        self.embedding = nn.Linear(atom_dim, hidden)
        self.blocks = nn.ModuleList(GATv2Block(hidden, edge_dim, heads) for _ in range(n_layers))
        self.head = PerTargetHeads(hidden, head_hidden, n_targets, n_head_layers)

    def embed(self, batch: Any) -> Tensor:
        """The pooled trunk embedding ``(B, hidden)``."""
        x = self.embedding(batch.x)
        for block in self.blocks:
            x = block(x, batch.edge_index, batch.edge_attr)
        return global_mean_pool(x, batch.batch, size=batch.num_graphs)

    def forward(self, batch: Any) -> Tensor:
        return self.head(self.embed(batch))
