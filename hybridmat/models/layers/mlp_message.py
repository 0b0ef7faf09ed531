r"""Message passing with MLP messages and an MLP node update: the atom-graph layer of ``alignn_simple``.

The update is a plain message-passing neural network (Gilmer et al., ICML 2017) with a batch-normed
residual, the building block of the "simplified ALIGNN" that has no line graph and no edge gating.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MLPMessageConv(nn.Module):
    r"""Messages and node update through two-layer MLPs, summed over neighbours, batch norm + residual.

    For each edge :math:`(j \to i)` (``edge_index[0] = j`` = neighbour, ``edge_index[1] = i`` = centre):

    .. math::
        \mathbf{m}_{ij} &= W_2\,\operatorname{SiLU}\big(W_1 [\mathbf{x}_i \,\|\, \mathbf{x}_j \,\|\,
            \mathbf{e}_{ij}] + \mathbf{b}_1\big) + \mathbf{b}_2

        \mathbf{a}_i &= \sum_{j \in \mathcal{N}(i)} \mathbf{m}_{ij}

        \mathbf{x}_i' &= \mathbf{x}_i + \operatorname{SiLU}\Big(\operatorname{BN}\big(U_2\,
            \operatorname{SiLU}(U_1 [\mathbf{x}_i \,\|\, \mathbf{a}_i] + \mathbf{c}_1)
            + \mathbf{c}_2\big)\Big)

    Edge features :math:`\mathbf{e}_{ij}` are read, not updated. Unlike
    :class:`~hybridmat.models.layers.eggc.EdgeGatedGraphConv` there is no gate: every neighbour's message
    counts in full, so comparing the two isolates what gating and the line graph add. The sum (not a mean)
    keeps the coordination number visible to the update; an atom without neighbours gets
    :math:`\mathbf{a}_i = 0`.

    ``W_1 [x_i || x_j || e_ij]`` is evaluated as ``(x W_1^i)[i] + (x W_1^j)[j] + e W_1^e``: the node parts
    are one ``(N, F) x (F, 2F)`` matmul per layer instead of one per edge, and the ``(E, 3F)``
    concatenation is never built.

    Args:
        channels: ``F``, the width of node and edge features (in = out, for the residual).

    Shapes:
        ``x`` ``(N, F)``, ``edge_index`` ``(2, E)`` int64, ``edge_attr`` ``(E, F)`` :math:`\to` ``(N, F)``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.message_in = nn.Linear(3 * channels, channels)  # columns: x_i, x_j, e_ij
        self.message_out = nn.Linear(channels, channels)
        self.update_in = nn.Linear(2 * channels, channels)  # columns: x_i, a_i
        self.update_out = nn.Linear(channels, channels)
        self.bn = nn.BatchNorm1d(channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Reinitialise the four linear maps and the batch norm."""
        for module in (self.message_in, self.message_out, self.update_in, self.update_out, self.bn):
            module.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        """Return the updated ``x``; see the class docstring for the update rule."""
        c = self.channels
        neighbour, centre = edge_index[0], edge_index[1]
        weight = self.message_in.weight  # (F, 3F)
        node_weight = torch.cat([weight[:, :c], weight[:, c : 2 * c]], dim=0)  # (2F, F)
        centre_part, neighbour_part = (x @ node_weight.t()).split(c, dim=1)  # (N, F) each
        hidden = F.linear(edge_attr, weight[:, 2 * c :], self.message_in.bias)  # (E, F)
        hidden = hidden + centre_part.index_select(0, centre) + neighbour_part.index_select(0, neighbour)
        message = self.message_out(F.silu(hidden))
        aggregated = x.new_zeros(x.shape).index_add_(0, centre, message)
        update = self.update_out(F.silu(self.update_in(torch.cat([x, aggregated], dim=1))))
        return x + F.silu(self.bn(update))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.channels})"
