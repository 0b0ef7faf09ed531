r"""Graph attention with bond features (GATv2, Brody, Alon & Yahav, ICLR 2022) as a residual block.

The trunk layer of ``multitask_gat``: PyG's :class:`~torch_geometric.nn.conv.GATv2Conv` with
``edge_dim`` (the bond's Gaussian distances enter every attention score), followed by batch norm, SiLU
and a residual connection, so that blocks can be stacked like the other convolutions here.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GATv2Conv


class GATv2Block(nn.Module):
    r"""Multi-head GATv2 attention over neighbours, with bond features in the scores, then BN + residual.

    For each edge :math:`(j \to i)` (``edge_index[0] = j`` = neighbour, ``edge_index[1] = i`` = centre)
    and head :math:`h = 1 \dots H` with width :math:`C / H`:

    .. math::
        s^h_{ij} &= \mathbf{a}_h^\top \operatorname{LeakyReLU}_{0.2}\big(W^h_t \mathbf{x}_i + W^h_s
            \mathbf{x}_j + W^h_e \mathbf{e}_{ij}\big), \qquad
        \alpha^h_{ij} = \frac{\exp s^h_{ij}}{\sum_{k \in \mathcal{N}(i)} \exp s^h_{ik}}

        \mathbf{o}_i &= \big\Vert_{h=1}^{H} \sum_{j \in \mathcal{N}(i)} \alpha^h_{ij} W^h_s \mathbf{x}_j
            + \mathbf{b}, \qquad
        \mathbf{x}_i' = \mathbf{x}_i + \operatorname{SiLU}(\operatorname{BN}(\mathbf{o}_i))

    No self-loops are added: PyG's ``add_self_loops`` first *removes* existing ones, and in a periodic
    crystal an edge :math:`i \to i` is a bond to a periodic image of the same atom (all of a one-atom
    cell's bonds). An atom without neighbours gets :math:`\mathbf{o}_i = \mathbf{b}`.

    Args:
        channels: ``C``, the atom feature width (in = out, for the residual); divisible by ``heads``.
        edge_dim: bond feature width (41 Gaussian distances with the default featurization).
        heads: number of attention heads ``H``, concatenated.

    Shapes:
        ``x`` ``(N, C)``, ``edge_index`` ``(2, E)`` int64, ``edge_attr`` ``(E, edge_dim)``
        :math:`\to` ``(N, C)``.
    """

    def __init__(self, channels: int, edge_dim: int, heads: int = 4) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.channels = channels
        self.edge_dim = edge_dim
        self.heads = heads
        self.attention = GATv2Conv(channels, channels // heads, heads=heads, edge_dim=edge_dim,
                                   add_self_loops=False)
        self.bn = nn.BatchNorm1d(channels)

    def reset_parameters(self) -> None:
        """Reinitialise the attention layer and the batch norm."""
        self.attention.reset_parameters()
        self.bn.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        """Return the updated ``x``; see the class docstring for the update rule."""
        return x + F.silu(self.bn(self.attention(x, edge_index, edge_attr)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.channels}, edge_dim={self.edge_dim}, heads={self.heads})"
