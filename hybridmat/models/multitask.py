"""Multi-task CGCNN: one shared graph trunk, one head per target (train with
:class:`~hybridmat.models.losses.MultiTaskLoss`, which masks missing labels and weights the tasks)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hybridmat.models.base import register
from hybridmat.models.cgcnn import CGCNN, softplus_mlp
from hybridmat.models.losses import MultiTaskLoss

__all__ = ["MultiTaskCGCNN", "MultiTaskLoss"]


class PerTargetHeads(nn.Module):
    """One softplus MLP per target on a shared embedding: ``(B, hidden) -> (B, n_targets)``."""

    def __init__(self, hidden: int, head_hidden: int, n_targets: int, n_head_layers: int) -> None:
        super().__init__()
        self.heads = nn.ModuleList(softplus_mlp(hidden, head_hidden, 1, n_head_layers) for _ in range(n_targets))

    def forward(self, h: Tensor) -> Tensor:
        return torch.cat([head(h) for head in self.heads], dim=1)


@register("multitask")
class MultiTaskCGCNN(CGCNN):
    r"""Shared :class:`~hybridmat.models.cgcnn.CGCNNEncoder` trunk, then a separate softplus MLP per target.

    .. math:: \hat Y_{:, t} = \mathrm{MLP}_t(\mathbf{h}_G), \quad t = 1 \dots T

    Unlike a single head with ``T`` outputs, each target has its own hidden layer, so the only coupling
    between tasks is the shared trunk. Encoder/head hyper-parameters and defaults as
    :class:`~hybridmat.models.cgcnn.CGCNN` (``head_hidden`` is per head). Output: ``(B, n_targets)``.
    """

    @staticmethod
    def build_head(hidden: int, head_hidden: int, n_targets: int, n_head_layers: int) -> nn.Module:
        """:class:`PerTargetHeads`."""
        return PerTargetHeads(hidden, head_hidden, n_targets, n_head_layers)
