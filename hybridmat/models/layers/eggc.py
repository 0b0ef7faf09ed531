r"""Edge-gated graph convolution: ALIGNN's ``EdgeGatedGraphConv`` (Bresson & Laurent's residual gated GCN).

Reference: X. Bresson, T. Laurent, arXiv:1711.07553 (2017); K. Choudhary, B. DeCost,
npj Comput. Mater. 7, 185 (2021), code ``alignn/models/alignn.py`` (``EdgeGatedGraphConv``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class EdgeGatedGraphConv(nn.Module):
    r"""Residual edge-gated graph convolution updating node features ``h`` and edge features ``e``.

    For each edge :math:`(j \to i)` (``edge_index[0] = j`` = source/neighbour,
    ``edge_index[1] = i`` = target/centre), with :math:`\mathcal{N}(i)` the sources of the edges into
    ``i``:

    .. math::
        \hat e_{ji} &= A h_i + B h_j + C e_{ji}, \qquad \sigma_{ji} = \operatorname{sigmoid}(\hat e_{ji})

        h_i' &= h_i + \operatorname{SiLU}\Big(\operatorname{BN}\Big(U h_i +
            \frac{\sum_{j \in \mathcal{N}(i)} \sigma_{ji} \odot V h_j}
                 {\sum_{j \in \mathcal{N}(i)} \sigma_{ji} + \varepsilon}\Big)\Big)

        e_{ji}' &= e_{ji} + \operatorname{SiLU}(\operatorname{BN}(\hat e_{ji}))

    ``A, B, U, V`` are affine and ``C`` linear (one gate bias suffices: ALIGNN's three gate biases only
    ever appear summed); the division is element-wise, :math:`\varepsilon = 10^{-6}`, and ``BN`` is
    :class:`~torch.nn.BatchNorm1d` over nodes (resp. edges). Names in ALIGNN's code: ``dst_gate = A``
    (target), ``src_gate = B`` (source), ``edge_gate = C``, ``src_update = U`` (applied to the node
    being updated, despite the name) and ``dst_update = V`` (applied to the source of each message,
    DGL ``u_mul_e``). A node without incoming edges gets :math:`h_i' = h_i + \operatorname{SiLU}(
    \operatorname{BN}(U h_i))`.

    On ALIGNN's line graph the "nodes" are bonds (``h`` = bond features ``y``) and the "edges" are
    bond pairs (``e`` = angle features ``z``); the same layer applies unchanged.

    ``A h, B h, U h, V h`` come from one fused ``(F, 4F)`` matmul over nodes; ``A h``, ``B h`` and
    ``V h`` are then gathered per edge (``[h_i || h_j || e_ji]`` is never built), so the per-edge work
    is three gathers of width ``F``, one ``(E, F) x (F, F)`` matmul and two scatter-sums of width ``F``.

    Args:
        channels: ``F``, the width of node and edge features (in = out, for the residual).
        update_edges: if ``False`` the layer has no edge batch norm and returns ``edge_attr``
            unchanged; for the last layer of a stack whose edge output nobody reads (no idle
            parameters, and one ``(E, F)`` batch norm + SiLU saved).
        eps: :math:`\varepsilon` in the gate normaliser.

    Shapes:
        ``x`` ``(N, F)``, ``edge_index`` ``(2, E)`` int64, ``edge_attr`` ``(E, F)``
        :math:`\to` ``(x', edge_attr')`` ``(N, F)``, ``(E, F)``.
    """

    def __init__(self, channels: int, update_edges: bool = True, eps: float = 1e-6) -> None:
        super().__init__()
        self.channels = channels
        self.update_edges = update_edges
        self.eps = eps
        # A, B, U, V fused into one (F, 4F) map; output blocks in the order [B | V | A | U].
        self.node_linear = nn.Linear(channels, 4 * channels)
        self.edge_linear = nn.Linear(channels, channels, bias=False)
        self.bn_nodes = nn.BatchNorm1d(channels)
        self.bn_edges = nn.BatchNorm1d(channels) if update_edges else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Reinitialise like ALIGNN's separate ``nn.Linear`` layers (same fan-in, so same ranges)."""
        self.node_linear.reset_parameters()
        self.edge_linear.reset_parameters()
        self.bn_nodes.reset_parameters()
        if self.bn_edges is not None:
            self.bn_edges.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> tuple[Tensor, Tensor]:
        """Return the updated ``(x, edge_attr)``; see the class docstring for the update rule."""
        src, dst = edge_index[0], edge_index[1]
        b, v, a, u = self.node_linear(x).split(self.channels, dim=1)  # (N, F) each
        # Per-edge tensors are built in place where autograd allows: on CPU a fresh (E, F) buffer
        # costs about as much as the arithmetic on it (page faults), so every allocation saved counts.
        gate = a.index_select(0, dst).add_(b.index_select(0, src))
        gate.addmm_(edge_attr, self.edge_linear.weight.t())  # (E, F) = A h_i + B h_j + C e_ji
        sigma = torch.sigmoid(gate)
        numerator = x.new_zeros(u.shape).index_add_(0, dst, sigma * v.index_select(0, src))
        normaliser = x.new_zeros(u.shape).index_add_(0, dst, sigma)
        h = u + numerator / normaliser.add_(self.eps)
        x_out = F.silu(self.bn_nodes(h)).add_(x)  # SiLU's backward reads its input, not its output
        if self.bn_edges is None:
            return x_out, edge_attr
        return x_out, F.silu(self.bn_edges(gate)).add_(edge_attr)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.channels}, update_edges={self.update_edges})"
