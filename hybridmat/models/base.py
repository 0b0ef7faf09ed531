"""The contract every torch model in hybridmat follows, and the registry that builds them by name.

A model is built from a small config (``build_model(name, n_targets=..., composition_dim=..., **hyper)``),
keeps that config in ``model.config`` so a checkpoint can rebuild it, and maps a PyG ``Batch`` of
:class:`~hybridmat.features.pyg.CrystalGraphData` to a ``(num_graphs, n_targets)`` tensor of
predictions in *normalised* target units (the trainer owns target normalisation).

Batch fields available to ``forward``: ``x`` (N, 92) atom features, ``edge_index`` (2, E) with row 0 =
neighbour j and row 1 = centre i, ``edge_attr`` (E, 41) Gaussian distances, ``edge_vec`` (E, 3),
``batch`` (N,) graph index, ``composition`` (B, F) raw composition features, and with a line graph
``line_edge_index`` (2, T) (indices into edges) and ``angle_cos`` (T,).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

MODEL_REGISTRY: dict[str, type[PropertyModel]] = {}
#: Models that are not torch modules: the random forest and the late fusion of a forest with a GNN.
NON_TORCH_MODELS: tuple[str, ...] = ("rf", "late_fusion")


class PropertyModel(nn.Module):
    """Base class: subclasses set ``name``, the class flags, and implement ``forward(batch)``."""

    name: ClassVar[str]
    #: The model reads ``line_edge_index`` / ``angle_cos`` (datasets must be built with ``line_graph=True``).
    needs_line_graph: ClassVar[bool] = False
    #: The model reads ``batch.composition``; its scaler must be fitted on training data.
    uses_composition: ClassVar[bool] = False

    def __init__(self, *, n_targets: int = 1, composition_dim: int = 0, **hyper: Any) -> None:
        super().__init__()
        self.config: dict[str, Any] = {"n_targets": n_targets, "composition_dim": composition_dim, **hyper}
        self.n_targets = n_targets
        self.composition_dim = composition_dim
        # Standardisation of raw composition features, fitted on the training split only.
        self.register_buffer("composition_mean", torch.zeros(composition_dim))
        self.register_buffer("composition_std", torch.ones(composition_dim))

    def fit_composition_scaling(self, composition: Tensor) -> None:
        """Set the composition mean/std from the training split's ``(n, F)`` composition matrix.

        A feature that is constant on the training split keeps std 1 (it is only centred): dividing by a
        near-zero std would blow up any other value seen at prediction time.
        """
        std = composition.std(dim=0)
        self.composition_mean.copy_(composition.mean(dim=0))
        self.composition_std.copy_(torch.where(std > 1e-8, std, torch.ones_like(std)))

    def scaled_composition(self, batch: Any) -> Tensor:
        """``batch.composition`` standardised with the training statistics."""
        return (batch.composition - self.composition_mean) / self.composition_std

    def forward(self, batch: Any) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def register(name: str) -> Callable[[type[PropertyModel]], type[PropertyModel]]:
    """Class decorator adding a model to :data:`MODEL_REGISTRY` under ``name``."""

    def decorate(cls: type[PropertyModel]) -> type[PropertyModel]:
        if name in MODEL_REGISTRY:
            raise ValueError(f"model name {name!r} is already registered to {MODEL_REGISTRY[name].__name__}")
        cls.name = name
        MODEL_REGISTRY[name] = cls
        return cls

    return decorate


def build_model(name: str, **config: Any) -> PropertyModel:
    """Instantiate a registered model from its config (as stored in ``model.config``)."""
    import hybridmat.models  # noqa: F401  (registers the built-in models)

    if name not in MODEL_REGISTRY:
        raise ValueError(f"unknown model {name!r}; registered models: {sorted(MODEL_REGISTRY)}")
    return MODEL_REGISTRY[name](**config)
