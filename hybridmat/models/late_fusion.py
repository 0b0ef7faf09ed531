"""Late fusion of a composition model (random forest) and a graph model, fitted on VALIDATION predictions.

Both combiners take the two parents' predictions, not features, so they are fitted after the parents
are trained. They must be fitted on held-out (validation) predictions: a random forest's predictions on
its own training rows are close to the labels (each tree has seen most rows), so an α chosen there
over-trusts the forest.

* ``alpha``: ``ŷ = α·ŷ_rf + (1 − α)·ŷ_gnn`` per target, α on a grid over [0, 1] minimising validation MAE,
  or a given ``fixed_alpha`` (e.g. one chosen by ``hybridmat tune``) for every target.
* ``stacking``: ``ŷ = w_0 + w_1·ŷ_rf + w_2·ŷ_gnn`` per target, least squares on validation predictions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from hybridmat.atomic_io import atomic_write_bytes
from hybridmat.models.base import Category, HyperParameters, model_class, register, validate_hyper

ALPHA_GRID = np.linspace(0.0, 1.0, 101)


class LateFusionHyper(HyperParameters):
    """``model.hyper`` of late fusion: the two parents and how they are combined."""

    graph_model: str = Field("cgcnn", description="The graph parent: a registered torch model")
    graph_hyper: dict[str, Any] = Field(default_factory=dict, description="The graph parent's hyper-parameters")
    rf: dict[str, Any] = Field(default_factory=dict, description="The random forest's hyper-parameters")
    method: Literal["alpha", "stacking"] = "alpha"
    alpha: float | None = Field(None, ge=0, le=1, description="Fixed α for every target (default: fitted on val)")

    @field_validator("rf")
    @classmethod
    def _forest(cls, hyper: dict[str, Any]) -> dict[str, Any]:
        return validate_hyper("rf", hyper)

    @model_validator(mode="after")
    def _graph_parent(self) -> LateFusionHyper:
        from hybridmat.models.base import PropertyModel

        if not issubclass(model_class(self.graph_model), PropertyModel):
            raise ValueError(f"graph_model must be a torch graph model, got {self.graph_model!r}")  # noqa: TRY004
        validate_hyper(self.graph_model, self.graph_hyper)
        return self


@register("late_fusion")
@dataclass
class LateFusion:
    """``method`` "alpha" or "stacking"; ``fit`` on validation predictions, then ``predict``."""

    name: ClassVar[str]
    category: ClassVar[Category] = "hybrid"
    needs_line_graph: ClassVar[bool] = False
    hyper_model: ClassVar[type[HyperParameters]] = LateFusionHyper

    method: str = "alpha"
    alpha: np.ndarray = field(default_factory=lambda: np.empty(0))
    weights: np.ndarray = field(default_factory=lambda: np.empty((0, 3)))
    #: α used for every target instead of the grid search (``fit`` still fits the stacking weights).
    fixed_alpha: float | None = None

    def __post_init__(self) -> None:
        if self.method not in ("alpha", "stacking"):
            raise ValueError(f"late fusion method must be 'alpha' or 'stacking', got {self.method!r}")
        if self.fixed_alpha is not None and not 0.0 <= self.fixed_alpha <= 1.0:
            raise ValueError(f"late fusion alpha must be in [0, 1], got {self.fixed_alpha}")

    def fit(self, rf_val: np.ndarray, gnn_val: np.ndarray, y_val: np.ndarray) -> LateFusion:
        """Fit per target on ``(n, T)`` validation predictions of both parents and labels (NaN = missing)."""
        rf_val, gnn_val, y_val = (np.asarray(a, dtype=np.float64).reshape(len(a), -1) for a in (rf_val, gnn_val, y_val))
        alphas, weights = [], []
        for t in range(y_val.shape[1]):
            mask = np.isfinite(y_val[:, t])
            rf, gnn, y = rf_val[mask, t], gnn_val[mask, t], y_val[mask, t]
            if self.fixed_alpha is None:
                errors = [np.mean(np.abs(a * rf + (1 - a) * gnn - y)) for a in ALPHA_GRID]
                alphas.append(float(ALPHA_GRID[int(np.argmin(errors))]))
            else:
                alphas.append(float(self.fixed_alpha))
            design = np.column_stack([np.ones_like(rf), rf, gnn])
            weights.append(np.linalg.lstsq(design, y, rcond=None)[0])
        self.alpha, self.weights = np.asarray(alphas), np.asarray(weights)
        return self

    def predict(self, rf_pred: np.ndarray, gnn_pred: np.ndarray) -> np.ndarray:
        """Fused ``(n, T)`` predictions."""
        if self.alpha.size == 0:
            raise RuntimeError("LateFusion.predict before fit: fit on validation predictions first")
        rf_pred = np.asarray(rf_pred, dtype=np.float64).reshape(len(rf_pred), -1)
        gnn_pred = np.asarray(gnn_pred, dtype=np.float64).reshape(len(gnn_pred), -1)
        if self.method == "alpha":
            return self.alpha * rf_pred + (1 - self.alpha) * gnn_pred
        return self.weights[:, 0] + self.weights[:, 1] * rf_pred + self.weights[:, 2] * gnn_pred

    def as_dict(self) -> dict[str, Any]:
        """Plain form for checkpoints and reports."""
        return {"method": self.method, "alpha": self.alpha.tolist(), "weights": self.weights.tolist(),
                "fixed_alpha": self.fixed_alpha}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LateFusion:
        """Inverse of :meth:`as_dict`."""
        return cls(values["method"], np.asarray(values["alpha"], dtype=np.float64),
                   np.asarray(values["weights"], dtype=np.float64).reshape(-1, 3), values.get("fixed_alpha"))

    def save(self, path: str | Path, **extra: Any) -> None:
        """JSON of :meth:`as_dict` under ``"fusion"``, plus ``extra`` keys (e.g. the graph parent's name)."""
        atomic_write_bytes(Path(path), json.dumps({**extra, "fusion": self.as_dict()}, indent=2).encode())

    @classmethod
    def load(cls, path: str | Path) -> tuple[LateFusion, dict[str, Any]]:
        """The fusion written by :meth:`save` and the whole JSON document."""
        document = json.loads(Path(path).read_text())
        return cls.from_dict(document["fusion"]), document
