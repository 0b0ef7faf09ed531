"""The contract every model in hybridmat follows, and the one registry that knows them by name.

Every registered model class, torch or not, declares

* ``name`` (set by :func:`register`), ``category`` (``composition``, ``graph`` or ``hybrid``: which input it
  reads, for tables and figures) and ``needs_line_graph`` (datasets must carry ALIGNN line graphs);
* its hyper-parameters: by default the keyword arguments of its typed constructor (names, types, defaults and
  ``Annotated[..., Field(ge=...)]`` ranges), minus the data dimensions ``n_targets`` / ``composition_dim``;
  a class whose job-file hyper-parameters are not its constructor's sets ``hyper_model`` instead.
  :func:`validate_hyper` checks a job's ``model.hyper`` against that one declaration (job files, tune spaces
  and ``submit`` all go through it) and names the allowed keys when one is wrong;
* ``fit`` / ``predict`` / ``save`` / ``load``: torch models inherit them from :class:`PropertyModel` through
  the one trainer and checkpoint format (:mod:`hybridmat.training`); the random forest and late fusion
  implement them on their own inputs (:mod:`hybridmat.models.rf`, :mod:`hybridmat.models.late_fusion`).

Adding a model is one module with one ``@register("name")`` class, plus its import in ``hybridmat.models``.

A torch model is built from a small config (``build_model(name, n_targets=..., composition_dim=..., **hyper)``),
keeps that config in ``model.config`` so a checkpoint can rebuild it, and maps a PyG ``Batch`` of
:class:`~hybridmat.features.pyg.CrystalGraphData` to a ``(num_graphs, n_targets)`` tensor of
predictions in *normalised* target units (the trainer owns target normalisation).

Batch fields available to ``forward``: ``x`` (N, 92) atom features, ``edge_index`` (2, E) with row 0 =
neighbour j and row 1 = centre i, ``edge_attr`` (E, 41) Gaussian distances, ``edge_vec`` (E, 3),
``batch`` (N,) graph index, ``composition`` (B, F) raw composition features, and with a line graph
``line_edge_index`` (2, T) (indices into edges) and ``angle_cos`` (T,).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from functools import cache
from typing import Annotated, Any, ClassVar, Literal, TypeVar, get_type_hints

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from torch import Tensor, nn

from hybridmat.console import UserError

Category = Literal["composition", "graph", "hybrid"]
#: Constructor arguments set from the data, never from ``model.hyper``.
DATA_DIMENSIONS = ("n_targets", "composition_dim")
#: Range annotations for typed constructors: the hyper-parameter schema reads them.
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]

#: Every model by name: torch :class:`PropertyModel` subclasses, the random forest and late fusion.
MODEL_REGISTRY: dict[str, type] = {}
ModelClass = TypeVar("ModelClass", bound=type)


class HyperParameters(BaseModel):
    """Base of the hyper-parameter schemas: unknown keys are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


def _unbounded_composition_range(_module: nn.Module, state_dict: dict[str, Any], prefix: str, *_: Any) -> None:
    """Checkpoints written before the training range was stored load with an unbounded range (no clip), so
    their predictions stay exactly what they were."""
    mean = state_dict.get(prefix + "composition_mean")
    if mean is not None and prefix + "composition_min" not in state_dict:
        state_dict[prefix + "composition_min"] = torch.full_like(mean, -torch.inf)
        state_dict[prefix + "composition_max"] = torch.full_like(mean, torch.inf)


class PropertyModel(nn.Module):
    """Base class of the torch models: subclasses set the class flags and implement ``forward(batch)``.

    ``fit`` is :func:`hybridmat.training.train_member` (one trainer for every torch model), ``predict``
    :func:`hybridmat.training.checkpoint.predict_table`, ``save`` / ``load`` the ``weights_only`` checkpoint of
    :mod:`hybridmat.training.checkpoint`, which stores ``model.config`` so :func:`build_model` rebuilds it.
    """

    name: ClassVar[str]
    category: ClassVar[Category] = "graph"
    #: The model reads ``line_edge_index`` / ``angle_cos`` (datasets must be built with ``line_graph=True``).
    needs_line_graph: ClassVar[bool] = False
    #: The model reads ``batch.composition``; its scaler must be fitted on training data.
    uses_composition: ClassVar[bool] = False
    def __init__(self, *, n_targets: int = 1, composition_dim: int = 0, **hyper: Any) -> None:
        super().__init__()
        self.config: dict[str, Any] = {"n_targets": n_targets, "composition_dim": composition_dim, **hyper}
        self.n_targets = n_targets
        self.composition_dim = composition_dim
        # Standardisation of raw composition features and their training range, fitted on the training split only.
        self.register_buffer("composition_mean", torch.zeros(composition_dim))
        self.register_buffer("composition_std", torch.ones(composition_dim))
        self.register_buffer("composition_min", torch.full((composition_dim,), -torch.inf))
        self.register_buffer("composition_max", torch.full((composition_dim,), torch.inf))
        self.register_load_state_dict_pre_hook(_unbounded_composition_range)

    def fit_composition_scaling(self, composition: Tensor) -> None:
        """Set the composition mean/std and per-feature range from the training split's ``(n, F)`` matrix.

        A feature that is constant on the training split keeps std 1 (it is only centred): dividing by a
        near-zero std would blow up any other value seen at prediction time.
        """
        std = composition.std(dim=0)
        self.composition_mean.copy_(composition.mean(dim=0))
        self.composition_std.copy_(torch.where(std > 1e-8, std, torch.ones_like(std)))
        self.composition_min.copy_(composition.min(dim=0).values)
        self.composition_max.copy_(composition.max(dim=0).values)

    def scaled_composition(self, batch: Any) -> Tensor:
        """``batch.composition`` clipped to the training range, then standardised with the training statistics.

        The clip bounds what a composition never seen in training can feed the network: without it, one
        feature 390,000 training σ out (Co2NOF among the Castelli perovskites) drove an early-fusion
        prediction to 1,431 eV. Such inputs are still flagged by the domain check; they no longer explode.
        """
        bounded = batch.composition.clamp(self.composition_min, self.composition_max)
        return (bounded - self.composition_mean) / self.composition_std

    def forward(self, batch: Any) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError



def register(name: str) -> Callable[[ModelClass], ModelClass]:
    """Class decorator adding a model (torch or not) to :data:`MODEL_REGISTRY` under ``name``."""

    def decorate(cls: ModelClass) -> ModelClass:
        if name in MODEL_REGISTRY:
            raise ValueError(f"model name {name!r} is already registered to {MODEL_REGISTRY[name].__name__}")
        missing = [attribute for attribute in ("category", "needs_line_graph") if not hasattr(cls, attribute)]
        if missing:
            raise TypeError(f"model {cls.__name__} does not declare {missing} (see hybridmat.models.base)")
        cls.name = name
        MODEL_REGISTRY[name] = cls
        return cls

    return decorate


def model_names() -> list[str]:
    """Every registered model name, sorted."""
    import hybridmat.models  # noqa: F401  (registers the built-in models)

    return sorted(MODEL_REGISTRY)


def model_class(name: str) -> type:
    """The registered class of ``name``; :class:`UserError` naming the registered models otherwise."""
    if name not in model_names():
        raise UserError(f"unknown model {name!r}; registered models: {model_names()}")
    return MODEL_REGISTRY[name]


def is_torch_model(name: str) -> bool:
    """Whether ``name`` is a torch :class:`PropertyModel` (trained by the one trainer, saved as checkpoints)."""
    return issubclass(model_class(name), PropertyModel)


@cache
def hyper_model(cls: type) -> type[HyperParameters]:
    """The hyper-parameter schema of a model class: its ``hyper_model``, else its typed constructor's keyword
    arguments (less :data:`DATA_DIMENSIONS`) as a pydantic model with the same types, ranges and defaults."""
    declared = cls.__dict__.get("hyper_model")
    if declared is not None:
        return declared
    hints = get_type_hints(cls.__init__, include_extras=True)
    fields: dict[str, Any] = {}
    for parameter in inspect.signature(cls.__init__).parameters.values():
        if parameter.name == "self" or parameter.name in DATA_DIMENSIONS:
            continue
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise TypeError(f"{cls.__name__}.__init__ takes **{parameter.name}: declare hyper_model explicitly")
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (hints.get(parameter.name, Any), default)
    return create_model(f"{cls.__name__}Hyper", __base__=HyperParameters, **fields)


def validate_hyper(name: str, hyper: Mapping[str, Any]) -> dict[str, Any]:
    """``hyper`` checked against model ``name``'s schema, values as the schema types them (only the given keys).

    Raises :class:`UserError` naming each unknown key with the allowed ones, or each bad value with the reason.
    """
    schema = hyper_model(model_class(name))
    try:
        validated = schema.model_validate(dict(hyper))
    except ValidationError as error:
        allowed = sorted(schema.model_fields)
        problems = []
        for item in error.errors():
            key = ".".join(str(part) for part in item["loc"])
            message = item["msg"].removeprefix("Value error, ")
            if item["type"] == "extra_forbidden":
                problems.append(f"unknown hyper-parameter {key!r} (allowed: {allowed})")
            else:
                problems.append(f"{key!r}: {message} (got {item.get('input')!r})" if key else message)
        raise UserError(f"model {name!r}: " + "; ".join(problems)) from None
    return {key: _plain(getattr(validated, key)) for key in hyper}


def _plain(value: Any) -> Any:
    """Nested schema values (e.g. late fusion's parents) as plain mappings."""
    return value.model_dump(exclude_unset=True) if isinstance(value, BaseModel) else value


def build_model(name: str, **config: Any) -> PropertyModel:
    """Instantiate a registered torch model from its config (as stored in ``model.config``)."""
    cls = model_class(name)
    if not issubclass(cls, PropertyModel):
        raise UserError(f"model {name!r} is not a torch model; torch models: "
                        f"{[n for n in model_names() if is_torch_model(n)]}")
    return cls(**config)
