"""Hybrid models that mix the composition vector with the pooled CGCNN graph embedding.

Both read ``batch.composition`` standardised with statistics from the training split
(:meth:`~hybridmat.models.base.PropertyModel.fit_composition_scaling`, called by the trainer).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from hybridmat.features.atom_features import N_ATOM_FEATURES
from hybridmat.models.base import NonNegativeInt, PositiveInt, PropertyModel, register
from hybridmat.models.cgcnn import EDGE_DIM, CGCNNEncoder, encode, softplus_mlp


def _check_composition_dim(name: str, composition_dim: int) -> None:
    if composition_dim < 1:
        raise ValueError(
            f"{name} reads the composition vector: pass composition_dim = its width "
            "(e.g. 132 for Magpie, 145 for Ward 2016), got 0"
        )


@register("early_fusion")
class EarlyFusion(PropertyModel):
    r"""Early fusion: :math:`\hat y = \mathrm{MLP}(\tilde{\mathbf{c}} \,\|\, \mathbf{h}_G)`.

    :math:`\tilde{\mathbf{c}}` (B, composition_dim) is the standardised composition vector and
    :math:`\mathbf{h}_G` (B, hidden) the pooled :class:`~hybridmat.models.cgcnn.CGCNNEncoder` embedding.
    The encoder hyper-parameters and defaults are CGCNN's; the head is a softplus MLP with
    ``n_head_layers`` hidden layers of width ``head_hidden``. Output: ``(B, n_targets)``.
    """

    category = "hybrid"
    uses_composition = True

    def __init__(self, *, n_targets: int = 1, composition_dim: int = 0, hidden: PositiveInt = 64,
                 n_conv: PositiveInt = 3, head_hidden: PositiveInt = 128, n_head_layers: NonNegativeInt = 1,
                 atom_dim: PositiveInt = N_ATOM_FEATURES,
                 edge_dim: PositiveInt = EDGE_DIM) -> None:
        _check_composition_dim("early_fusion", composition_dim)
        super().__init__(n_targets=n_targets, composition_dim=composition_dim, hidden=hidden, n_conv=n_conv,
                         head_hidden=head_hidden, n_head_layers=n_head_layers, atom_dim=atom_dim,
                         edge_dim=edge_dim)
        self.encoder = CGCNNEncoder(hidden, n_conv, atom_dim, edge_dim)
        self.head = softplus_mlp(composition_dim + hidden, head_hidden, n_targets, n_head_layers)

    def embed(self, batch: Any) -> Tensor:
        """The pooled graph embedding ``(B, hidden)``."""
        return encode(self.encoder, batch)

    def forward(self, batch: Any) -> Tensor:
        return self.head(torch.cat([self.scaled_composition(batch), self.embed(batch)], dim=1))


class SourceGate(nn.Module):
    r"""Per-sample softmax gate over two feature sources of the same width :math:`d`.

    .. math::
        [g_c, g_g] = \mathrm{softmax}\big(W_2\,\mathrm{softplus}(W_1 [\mathbf{h}_c \,\|\, \mathbf{h}_g] + b_1)
        + b_2\big), \qquad \mathbf{h} = g_c \mathbf{h}_c + g_g \mathbf{h}_g

    Shapes:
        - **input:** ``h_comp`` (B, d), ``h_graph`` (B, d)
        - **output:** fused (B, d), gate (B, 2) with columns (composition, graph), rows summing to 1
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(2 * dim, dim), nn.Softplus(), nn.Linear(dim, 2))

    def reset_parameters(self) -> None:
        for layer in self.score:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()

    def forward(self, h_comp: Tensor, h_graph: Tensor) -> tuple[Tensor, Tensor]:
        gate = torch.softmax(self.score(torch.cat([h_comp, h_graph], dim=1)), dim=1)
        return gate[:, :1] * h_comp + gate[:, 1:] * h_graph, gate


@register("attention_fusion")
class AttentionFusion(PropertyModel):
    r"""Attention fusion: project both sources to width ``fusion_dim``, mix them with a learned gate.

    .. math::
        \mathbf{h}_c = \mathrm{softplus}(\tilde{\mathbf{c}} W_c + b_c), \quad
        \mathbf{h}_g = \mathrm{softplus}(\mathbf{h}_G W_g + b_g), \quad
        \hat y = \mathrm{MLP}(g_c \mathbf{h}_c + g_g \mathbf{h}_g)

    with the per-sample weights :math:`(g_c, g_g)` from :class:`SourceGate`. :meth:`forward_with_gate`
    also returns the gate ``(B, 2)`` (composition, graph), which says per crystal how much each source
    was used. Encoder/head hyper-parameters as :class:`EarlyFusion`; ``fusion_dim`` defaults to 64.
    """

    category = "hybrid"
    uses_composition = True

    def __init__(self, *, n_targets: int = 1, composition_dim: int = 0, hidden: PositiveInt = 64,
                 n_conv: PositiveInt = 3, fusion_dim: PositiveInt = 64, head_hidden: PositiveInt = 128,
                 n_head_layers: NonNegativeInt = 1,
                 atom_dim: PositiveInt = N_ATOM_FEATURES, edge_dim: PositiveInt = EDGE_DIM) -> None:
        _check_composition_dim("attention_fusion", composition_dim)
        super().__init__(n_targets=n_targets, composition_dim=composition_dim, hidden=hidden, n_conv=n_conv,
                         fusion_dim=fusion_dim, head_hidden=head_hidden, n_head_layers=n_head_layers,
                         atom_dim=atom_dim, edge_dim=edge_dim)
        self.encoder = CGCNNEncoder(hidden, n_conv, atom_dim, edge_dim)
        self.comp_proj = nn.Sequential(nn.Linear(composition_dim, fusion_dim), nn.Softplus())
        self.graph_proj = nn.Sequential(nn.Linear(hidden, fusion_dim), nn.Softplus())
        self.gate = SourceGate(fusion_dim)
        self.head = softplus_mlp(fusion_dim, head_hidden, n_targets, n_head_layers)

    def embed(self, batch: Any) -> Tensor:
        """The pooled graph embedding ``(B, hidden)``."""
        return encode(self.encoder, batch)

    def forward_with_gate(self, batch: Any) -> tuple[Tensor, Tensor]:
        """Predictions ``(B, n_targets)`` and gate weights ``(B, 2)`` (composition, graph)."""
        h_comp = self.comp_proj(self.scaled_composition(batch))
        fused, gate = self.gate(h_comp, self.graph_proj(self.embed(batch)))
        return self.head(fused), gate

    def forward(self, batch: Any) -> Tensor:
        return self.forward_with_gate(batch)[0]
