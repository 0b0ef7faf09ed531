"""Per-target standardisation of labels, fitted on the training split and stored with every checkpoint.

Models predict in normalised units ``(y - mean) / std``; the trainer normalises labels for the loss
and denormalises predictions for metrics and :func:`~hybridmat.training.checkpoint.predict`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass(frozen=True)
class TargetNormalizer:
    """``mean`` and ``std`` of shape ``(T,)`` (float32) for the targets ``target_names``, in order."""

    mean: Tensor
    std: Tensor
    target_names: tuple[str, ...]

    @classmethod
    def fit(cls, y: Tensor, target_names: Sequence[str]) -> TargetNormalizer:
        """NaN-aware mean and population std (ddof=0) per column of the training labels ``(n, T)``.

        A target with a single label or zero spread gets ``std = 1`` (only the mean is removed).
        Raises if a target has no label at all: nothing could be learnt about it.
        """
        y = torch.as_tensor(y, dtype=torch.float64).reshape(len(y), -1)
        names = tuple(target_names)
        if y.shape[1] != len(names):
            raise ValueError(f"labels have {y.shape[1]} columns but {len(names)} target names {names}")
        labelled = ~torch.isnan(y)
        count = labelled.sum(dim=0)
        empty = [name for name, c in zip(names, count.tolist()) if c == 0]
        if empty:
            raise ValueError(f"targets {empty} have no label in the training split; drop them or add data")
        filled = torch.where(labelled, y, torch.zeros((), dtype=y.dtype))
        mean = filled.sum(dim=0) / count
        centred = torch.where(labelled, y - mean, torch.zeros((), dtype=y.dtype))
        std = (centred.square().sum(dim=0) / count).sqrt()
        std = torch.where((count > 1) & (std > 1e-12), std, torch.ones_like(std))
        return cls(mean.float(), std.float(), names)

    @property
    def n_targets(self) -> int:
        return len(self.target_names)

    def to(self, device: str | torch.device) -> TargetNormalizer:
        """A copy with ``mean``/``std`` on ``device`` (saves a host-to-device copy per training step)."""
        return TargetNormalizer(self.mean.to(device), self.std.to(device), self.target_names)

    def normalize(self, y: Tensor) -> Tensor:
        """``(y - mean) / std`` on ``y``'s device (NaN stays NaN)."""
        return (y - self.mean.to(y.device)) / self.std.to(y.device)

    def denormalize(self, y: Tensor) -> Tensor:
        """``y * std + mean``: normalised predictions back to original units."""
        return y * self.std.to(y.device) + self.mean.to(y.device)

    def state_dict(self) -> dict[str, Any]:
        """Plain lists, loadable with ``torch.load(..., weights_only=True)`` and JSON-serialisable."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "target_names": list(self.target_names)}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> TargetNormalizer:
        """Inverse of :meth:`state_dict`."""
        return cls(
            torch.tensor(state["mean"], dtype=torch.float32),
            torch.tensor(state["std"], dtype=torch.float32),
            tuple(state["target_names"]),
        )
