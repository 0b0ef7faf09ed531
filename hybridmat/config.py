"""Job files: one validated YAML schema for training, read with ``yaml.safe_load``.

Unknown keys and wrong types fail before any work starts, with the key's path and the allowed keys or
values. Relative paths in a job file are resolved against the job file's own directory, so a job runs
the same from any working directory (and on a cluster node with the repository checked out).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hybridmat.data.sources import SOURCE_SCHEMES
from hybridmat.features.featurizer import FeaturizerSettings


class Section(BaseModel):
    """A job-file section: unknown keys are errors, values are validated strictly."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSection(Section):
    """Where the labelled structures come from and how they are split."""

    source: str = Field(description="Source string (a table, CIF directory, matbench:..., mp:...)")
    split: str | None = Field(None, description="Split name in splits.json (e.g. cpu_small, full)")
    splits: str | None = Field(None, description="splits.json path (default: beside the source file)")
    targets: list[str] = Field(default_factory=lambda: ["e_form"], min_length=1)
    store: str | None = Field(None, description="Feature store directory (default: runs/features/<source name>)")
    split_seed: int = Field(0, description="Seed of the random 80/10/10 split when `split` is not given")


class FeaturesSection(Section):
    """Featurizer settings (see FeaturizerSettings)."""

    composition: Literal["magpie", "ward2016"] = "ward2016"
    cutoff: float = Field(8.0, gt=0)
    max_neighbors: int = Field(12, ge=1)

    def settings(self) -> FeaturizerSettings:
        """The equivalent :class:`FeaturizerSettings`."""
        return FeaturizerSettings(self.composition, self.cutoff, self.max_neighbors)


class ModelSection(Section):
    """Which registered model to build and its hyper-parameters."""

    name: str
    hyper: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        import hybridmat.models  # noqa: F401  (registers the built-in models)
        from hybridmat.models.base import MODEL_REGISTRY, NON_TORCH_MODELS

        allowed = sorted([*MODEL_REGISTRY, *NON_TORCH_MODELS])
        if name not in allowed:
            raise ValueError(f"unknown model {name!r}; allowed: {allowed}")
        return name


class TrainSection(Section):
    """Optimisation settings shared by every torch model."""

    epochs: int = Field(100, ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    schedule: Literal["onecycle", "cosine"] = "onecycle"
    patience: int = Field(20, ge=1)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True
    num_threads: int | None = Field(None, ge=1)
    loss_weighting: Literal["fixed", "uncertainty"] = "fixed"
    loss_lambdas: list[float] | None = None


class JobConfig(Section):
    """A whole job file."""

    name: str = "job"
    data: DataSection
    features: FeaturesSection = FeaturesSection()
    model: ModelSection
    train: TrainSection = TrainSection()
    ensemble: int = Field(1, ge=1, description="Number of ensemble members (different seeds)")
    output: str = Field("runs/train", description="Output directory for checkpoints and reports")


class JobFileError(ValueError):
    """A job file that does not match the schema; the message names each bad key."""


def _allowed_keys(location: tuple[Any, ...]) -> list[str]:
    """Field names of the section at ``location`` (the parent of the offending key)."""
    model: type[BaseModel] = JobConfig
    for part in location:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return sorted(model.model_fields)
        model = annotation
    return sorted(model.model_fields)


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        path = ".".join(str(p) for p in item["loc"])
        if item["type"] == "extra_forbidden":
            allowed = _allowed_keys(item["loc"][:-1])
            lines.append(f"unknown key '{path}'; allowed keys here: {allowed}")
        else:
            lines.append(f"'{path}': {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


def parse_job(data: dict[str, Any], base: Path | None = None) -> JobConfig:
    """Validate a job mapping; relative paths are resolved against ``base``."""
    try:
        job = JobConfig.model_validate(data)
    except ValidationError as error:
        raise JobFileError(_describe(error)) from None
    if base is None:
        return job
    return job.model_copy(update={
        "data": job.data.model_copy(update={
            "source": _resolve(job.data.source, base),
            "splits": _resolve(job.data.splits, base),
            "store": _resolve(job.data.store, base),
        }),
        "output": _resolve(job.output, base),
    })


def _resolve(value: str | None, base: Path) -> str | None:
    """``value`` made absolute against ``base`` when it is a relative filesystem path."""
    if value is None or value.partition(":")[0] in SOURCE_SCHEMES:
        return value
    path, sep, query = value.partition("?")
    resolved = Path(path) if Path(path).is_absolute() else (base / path).resolve()
    return f"{resolved}{sep}{query}"


def load_job(path: Path | str) -> JobConfig:
    """Read and validate a YAML job file (``yaml.safe_load``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"job file {path} not found")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise JobFileError(f"{path}: a job file is a YAML mapping, got {type(data).__name__}")
    try:
        return parse_job(data, base=path.resolve().parent)
    except JobFileError as error:
        raise JobFileError(f"{path}:\n{error}") from None
