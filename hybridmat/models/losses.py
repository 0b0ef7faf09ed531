"""The one training loss of every torch model: a masked, per-target-weighted L1 or L2 regression loss."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

Weighting = Literal["fixed", "uncertainty"]
Regression = Literal["l1", "l2"]


class MultiTaskLoss(nn.Module):
    r"""Masked multi-target regression loss with fixed or learned (uncertainty) task weights.

    For predictions :math:`\hat Y` and labels :math:`Y` of shape (B, T), where NaN marks a missing label,
    let :math:`M_t` be the rows labelled for target :math:`t`, :math:`n_t = |M_t|` and

    .. math::
        L_t = \frac{1}{n_t} \sum_{b \in M_t} \ell(\hat Y_{bt} - Y_{bt}), \qquad
        \ell(r) = |r| \;(\texttt{l1}) \text{ or } r^2 \;(\texttt{l2}).

    * ``weighting="fixed"``: :math:`\mathcal{L} = \sum_t \lambda_t L_t` (``weights``, default all 1).
    * ``weighting="uncertainty"`` (Kendall, Gal & Cipolla, CVPR 2018): learned :math:`s_t` (initialised
      to 0), :math:`\mathcal{L} = \sum_t e^{-s_t} L_t + s_t`. With ``l1`` this is, up to a constant, the
      negative log-likelihood of a Laplace distribution with scale :math:`b_t = e^{s_t}`; with ``l2``, twice
      that of a Gaussian with variance :math:`\sigma_t^2 = e^{s_t}`. The :math:`s_t` are parameters of this
      module: give ``loss.parameters()`` to the optimiser too.

    The default is ``l1``: the reported metric is MAE (Matbench, CGCNN papers), and DFT labels have heavy
    tails (actinides, magnetic intermetallics, mislabelled rows) that L2 would let dominate a batch.

    Missing labels add nothing to the sum or to :math:`n_t`. A target with no label in the batch
    (:math:`n_t = 0`) drops out entirely, including its :math:`s_t` term (otherwise :math:`s_t` would be
    pushed down on every batch without labels); the loss stays finite, with zero gradient from that
    target. Everything is computed with tensor ops (no host sync).

    Shapes: ``pred`` (B, T), ``target`` (B, T) → scalar; :meth:`per_target` → (T,).
    """

    def __init__(
        self,
        n_targets: int = 1,
        weighting: Weighting = "fixed",
        weights: Sequence[float] | None = None,
        regression: Regression = "l1",
    ) -> None:
        super().__init__()
        if weighting not in ("fixed", "uncertainty"):
            raise ValueError(f"weighting must be 'fixed' or 'uncertainty', got {weighting!r}")
        if regression not in ("l1", "l2"):
            raise ValueError(f"regression must be 'l1' or 'l2', got {regression!r}")
        if weights is not None and (weighting != "fixed" or len(weights) != n_targets):
            raise ValueError(
                f"weights are the fixed λ per target: give {n_targets} of them with weighting='fixed', "
                f"got {list(weights)} with weighting={weighting!r}"
            )
        self.n_targets = n_targets
        self.weighting = weighting
        self.regression = regression
        fixed = [1.0] * n_targets if weights is None else [float(w) for w in weights]
        self.register_buffer("weights", torch.tensor(fixed))
        self.log_vars = nn.Parameter(torch.zeros(n_targets)) if weighting == "uncertainty" else None

    def per_target(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Masked mean loss per target ``(T,)`` (0 where unlabelled) and the label counts ``(T,)``."""
        if pred.shape != target.shape or pred.dim() != 2 or pred.size(1) != self.n_targets:
            raise ValueError(
                f"expected predictions and labels of shape (B, {self.n_targets}), got {tuple(pred.shape)} "
                f"and {tuple(target.shape)}"
            )
        labelled = ~torch.isnan(target)
        # Zero the residual where unlabelled *before* |r| or r^2, so no NaN reaches the backward pass.
        residual = torch.where(labelled, pred - torch.nan_to_num(target), torch.zeros_like(pred))
        error = residual.abs() if self.regression == "l1" else residual.square()
        counts = labelled.sum(dim=0)
        return error.sum(dim=0) / counts.clamp_min(1), counts

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        losses, counts = self.per_target(pred, target)
        if self.log_vars is None:
            return (self.weights * losses).sum()
        present = (counts > 0).to(losses.dtype)
        return (present * (torch.exp(-self.log_vars) * losses + self.log_vars)).sum()

    def extra_repr(self) -> str:
        return f"n_targets={self.n_targets}, weighting={self.weighting!r}, regression={self.regression!r}"
