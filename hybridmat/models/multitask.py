"""Multi-task CGCNN: one shared graph trunk, one head per target (train with
:class:`~hybridmat.models.losses.MultiTaskLoss`, which masks missing labels and weights the tasks)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from hybridmat.features.atom_features import N_ATOM_FEATURES
from hybridmat.models.base import PropertyModel, register
from hybridmat.models.cgcnn import EDGE_DIM, CGCNNEncoder, encode, softplus_mlp
from hybridmat.models.losses import MultiTaskLoss

__all__ = ["MultiTaskCGCNN", "MultiTaskLoss"]


@register("multitask")
class MultiTaskCGCNN(PropertyModel):
    r"""Shared :class:`~hybridmat.models.cgcnn.CGCNNEncoder` trunk, then a separate softplus MLP per target.

    .. math:: \hat Y_{:, t} = \mathrm{MLP}_t(\mathbf{h}_G), \quad t = 1 \dots T

    Unlike a single head with ``T`` outputs, each target has its own hidden layer, so the only coupling
    between tasks is the shared trunk. Encoder/head hyper-parameters and defaults as
    :class:`~hybridmat.models.cgcnn.CGCNN` (``head_hidden`` is per head). Output: ``(B, n_targets)``.
    """

    def __init__(self, *, n_targets: int = 1, composition_dim: int = 0, hidden: int = 64, n_conv: int = 3,
                 head_hidden: int = 128, n_head_layers: int = 1, atom_dim: int = N_ATOM_FEATURES,
                 edge_dim: int = EDGE_DIM) -> None:
        super().__init__(n_targets=n_targets, composition_dim=composition_dim, hidden=hidden, n_conv=n_conv,
                         head_hidden=head_hidden, n_head_layers=n_head_layers, atom_dim=atom_dim,
                         edge_dim=edge_dim)
        self.encoder = CGCNNEncoder(hidden, n_conv, atom_dim, edge_dim)
        self.heads = nn.ModuleList(
            softplus_mlp(hidden, head_hidden, 1, n_head_layers) for _ in range(n_targets)
        )

    def embed(self, batch: Any) -> Tensor:
        """The shared trunk's pooled graph embedding ``(B, hidden)``."""
        return encode(self.encoder, batch)

    def forward(self, batch: Any) -> Tensor:
        h = self.embed(batch)
        return torch.cat([head(h) for head in self.heads], dim=1)
