"""Job files: one validated YAML schema for training, tuning and screening, read with ``yaml.safe_load``.

Unknown keys and wrong types fail before any work starts, with the key's path and the allowed keys or
values. Relative paths in a job file are resolved against the job file's own directory, so a job runs
the same from any working directory (and on a cluster node with the repository checked out).
"""

from __future__ import annotations

import math
import reprlib
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from hybridmat.console import UserError
from hybridmat.data.plausibility import PlausibilitySettings
from hybridmat.data.source_strings import SOURCE_SCHEMES
from hybridmat.features.featurizer import MAX_CUTOFF, MAX_NEIGHBORS, FeaturizerSettings
from hybridmat.features.graph import DEFAULT_CUTOFF, DEFAULT_MAX_NEIGHBORS
from hybridmat.potentials.base import POTENTIALS
from hybridmat.potentials.relax import RelaxSettings


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
    cutoff: float = Field(DEFAULT_CUTOFF, gt=0, le=MAX_CUTOFF, allow_inf_nan=False)
    max_neighbors: int = Field(DEFAULT_MAX_NEIGHBORS, ge=1, le=MAX_NEIGHBORS)

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
        from hybridmat.models.base import model_names

        if name not in model_names():
            raise ValueError(f"unknown model {name!r}; allowed: {model_names()}")
        return name

    @field_validator("hyper")
    @classmethod
    def _schema(cls, hyper: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """Checked against the model's declared hyper-parameters (names, types, ranges) before any work."""
        from hybridmat.models.base import validate_hyper

        return hyper if "name" not in info.data else validate_hyper(info.data["name"], hyper)


class TrainSection(Section):
    """Optimisation settings shared by every torch model."""

    epochs: int = Field(100, ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    schedule: Literal["onecycle", "cosine"] = "onecycle"
    #: Epochs without a lower validation MAE before stopping; null follows the schedule to its end.
    patience: int | None = Field(20, ge=1)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True
    num_threads: int | None = Field(None, ge=1)
    retain_heap: bool = Field(True, description="CPU: keep freed memory in the process (faster steps, more memory)")
    loss_weighting: Literal["fixed", "uncertainty"] = "fixed"
    loss_lambdas: list[float] | None = None
    init_from: str | None = Field(None, description="Warm restart: an earlier training job's output (same model, "
                                                    "data and members); member k continues its member-k/best.pt "
                                                    "with this section's schedule")


#: Input rows per prediction shard of ``hybridmat screen`` (job files, the command and the demo).
SCREEN_SHARD_SIZE = 500


class RelaxSection(Section):
    """A screen's funnel: shortlist stage-1 predictions, relax the shortlist with a universal potential, re-score.

    The shortlist is ``hybridmat rank``'s order (``by``, ``where``, ``kappa``, ``hull_reference``): its first
    ``top_k`` rows and/or every row whose score is at most ``max_score``.
    """

    potential: str = Field("chgnet", description=f"Universal potential: {', '.join(sorted(POTENTIALS))}")
    top_k: int | None = Field(20, ge=1, description="Relax at most this many of the best stage-1 rows")
    max_score: float | None = Field(None, description="Relax only rows whose stage-1 score (e.g. lcb:e_hull) is at "
                                                      "most this")
    by: str = Field("lcb:e_form", description="Stage-1 order, as `rank --by` (lcb:e_hull needs hull_reference)")
    where: str | None = Field(None, description="Stage-1 filter, as `rank --where`")
    kappa: float = Field(1.0, ge=0, description="Standard deviations in lcb:/ucb: bounds")
    hull_reference: str | None = Field(None, description="Known phases for e_hull, as `rank --hull-reference`")
    fmax: float = Field(RelaxSettings.fmax, gt=0, description="Converged when every force is below this (eV/Å)")
    max_steps: int = Field(RelaxSettings.max_steps, ge=1, description="FIRE steps before converged = false")
    time_limit_s: float = Field(RelaxSettings.time_limit_s, gt=0, description="Seconds per structure before it is "
                                                                             "an error")
    workers: int = Field(1, ge=1, description="Relaxation actors (each loads the potential once)")

    @field_validator("potential")
    @classmethod
    def _known_potential(cls, name: str) -> str:
        if name not in POTENTIALS:
            raise ValueError(f"unknown potential {name!r}; choose one of {', '.join(sorted(POTENTIALS))}")
        return name

    @field_validator("max_score")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("max_score must be a finite number")
        return value

    def settings(self) -> RelaxSettings:
        """How each structure of the shortlist is relaxed."""
        return RelaxSettings(fmax=self.fmax, max_steps=self.max_steps, time_limit_s=self.time_limit_s)


class ScreenSection(Section):
    """``hybridmat screen JOB.yaml``: stream a source through an ensemble into prediction shards."""

    source: str = Field(description="Source string of the candidates (a table, CIF directory, candidates:..., mp:...)")
    models: list[str] | None = Field(None, description="Ensemble member checkpoints (default: the shipped ensemble)")
    out: str = Field("runs/screen", description="Predictions directory (Parquet shards + errors + manifest)")
    shard_size: int = Field(SCREEN_SHARD_SIZE, ge=1, description="Input rows per prediction shard")
    featurize_workers: int | None = Field(None, ge=1, description="Featurization actors (default: CPUs minus one)")
    inference_workers: int = Field(1, ge=1, description="Inference actors, each holding the whole ensemble")
    filter: PlausibilitySettings | None = Field(None, description="Plausibility filter applied before featurization "
                                                "(rules and windows; `filter: {}` for the defaults)")
    relax: RelaxSection | None = Field(None, description="Funnel: relax the stage-1 shortlist and re-score it "
                                                         "(`relax: {}` for the defaults)")


class SearchDimension(Section):
    """One searched value: exactly one of the distributions."""

    choice: list[Any] | None = Field(None, min_length=1)
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = Field(None, description="Integers in [low, high)")

    @field_validator("uniform", "loguniform", "randint")
    @classmethod
    def _ordered(cls, bounds: tuple[float, float] | None) -> tuple[float, float] | None:
        if bounds is not None and not bounds[0] < bounds[1]:
            raise ValueError(f"bounds are [low, high] with low < high, got {list(bounds)}")
        return bounds

    @field_validator("loguniform")
    @classmethod
    def _positive(cls, bounds: tuple[float, float] | None) -> tuple[float, float] | None:
        if bounds is not None and min(bounds) <= 0:
            raise ValueError(f"loguniform bounds must be positive, got {bounds}")
        return bounds

    def model_post_init(self, context: Any) -> None:
        given = [name for name in ("choice", "uniform", "loguniform", "randint") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of choice, uniform, loguniform, randint (got {given or 'none'})")


class TuneSection(Section):
    """``hybridmat tune JOB.yaml``: a Ray Tune search over dotted job-file keys."""

    space: dict[str, SearchDimension] = Field(
        description="Dotted job keys to search, e.g. train.lr, model.hyper.hidden, model.hyper.alpha, "
                    "train.loss_lambdas"
    )
    num_samples: int = Field(8, ge=1, description="Number of trials")
    max_epochs: int | None = Field(None, ge=1, description="Epochs per trial (default: train.epochs)")
    grace_period: int = Field(2, ge=1, description="ASHA: epochs before a trial may be stopped")
    reduction_factor: int = Field(3, ge=2, description="ASHA reduction factor")
    searcher: Literal["auto", "random", "optuna"] = Field(
        "auto", description="optuna when the optuna package is installed (auto) or required; else random"
    )
    max_concurrent: int | None = Field(None, ge=1, description="Trials running at once (default: as resources allow)")
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)
    storage: str = Field("runs/tune", description="Ray Tune storage path; an interrupted search resumes from it")
    best_job: str | None = Field(None, description="Where to write the best configuration as a job file "
                                                   "(default: <storage>/<name>/best.yaml)")


class JobConfig(Section):
    """A whole job file: ``data`` + ``model`` for train/evaluate/tune, ``screen`` for screening."""

    name: str = "job"
    data: DataSection | None = None
    features: FeaturesSection = FeaturesSection()
    model: ModelSection | None = None
    train: TrainSection = TrainSection()
    ensemble: int = Field(1, ge=1, description="Number of ensemble members (different seeds)")
    output: str = Field("runs/train", description="Output directory for checkpoints and reports")
    tune: TuneSection | None = None
    screen: ScreenSection | None = None

    def require(self, command: str, *sections: str) -> None:
        """Raise :class:`JobFileError` naming the sections ``command`` needs that the job file lacks."""
        missing = [name for name in sections if getattr(self, name) is None]
        if missing:
            raise JobFileError(f"job {self.name!r}: `hybridmat {command}` needs the section(s) {missing} "
                               "in the job file")


class JobFileError(UserError):
    """A job file that does not match the schema; the message names each bad key."""


def _allowed_keys(location: tuple[Any, ...]) -> list[str]:
    """Field names of the section at ``location`` (the parent of the offending key)."""
    model: type[BaseModel] = JobConfig
    parts = list(location)
    while parts:
        field = model.model_fields.get(str(parts.pop(0)))
        annotation = _section_type(getattr(field, "annotation", None))
        if annotation is None and get_origin(getattr(field, "annotation", None)) is dict and parts:
            parts.pop(0)  # a mapping key such as a tune.space entry
            annotation = _section_type(get_args(field.annotation)[1])
        if annotation is None:
            return sorted(model.model_fields)
        model = annotation
    return sorted(model.model_fields)


def _section_type(annotation: Any) -> type[BaseModel] | None:
    """The section class of an annotation such as ``DataSection`` or ``DataSection | None``."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _abridged(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: an error names the value, it never echoes the whole input."""
    shortener = reprlib.Repr()
    shortener.maxstring, shortener.maxother, shortener.maxlevel = limit, limit, 2
    text = shortener.repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        path = ".".join(str(p) for p in item["loc"])
        if item["type"] == "extra_forbidden":
            allowed = _allowed_keys(item["loc"][:-1])
            lines.append(f"unknown key '{path}'; allowed keys here: {allowed}")
        else:
            lines.append(f"'{path}': {item['msg']} (got {_abridged(item.get('input'))})")
    return "\n".join(lines)


def parse_job(data: dict[str, Any], base: Path | None = None) -> JobConfig:
    """Validate a job mapping; relative paths are resolved against ``base``."""
    try:
        job = JobConfig.model_validate(data)
    except ValidationError as error:
        raise JobFileError(_describe(error)) from None
    if base is None:
        return job
    update: dict[str, Any] = {"output": _resolve(job.output, base)}
    if job.train.init_from is not None:
        update["train"] = job.train.model_copy(update={"init_from": _resolve(job.train.init_from, base)})
    if job.data is not None:
        update["data"] = job.data.model_copy(update={
            "source": _resolve(job.data.source, base),
            "splits": _resolve(job.data.splits, base),
            "store": _resolve(job.data.store, base),
        })
    if job.tune is not None:
        update["tune"] = job.tune.model_copy(update={
            "storage": _resolve(job.tune.storage, base), "best_job": _resolve(job.tune.best_job, base),
        })
    if job.screen is not None:
        relax = job.screen.relax
        update["screen"] = job.screen.model_copy(update={
            "source": _resolve(job.screen.source, base), "out": _resolve(job.screen.out, base),
            "models": None if job.screen.models is None else [_resolve(m, base) for m in job.screen.models],
            "relax": relax and relax.model_copy(update={"hull_reference": _resolve(relax.hull_reference, base)}),
        })
    return job.model_copy(update=update)


def _resolve(value: str | None, base: Path) -> str | None:
    """``value`` made absolute against ``base`` when it is a relative filesystem path."""
    if value is None or value.partition(":")[0] in SOURCE_SCHEMES:
        return value
    path, sep, query = value.partition("?")
    resolved = Path(path) if Path(path).is_absolute() else (base / path).resolve()
    return f"{resolved}{sep}{query}"


#: A job file is a page of settings; anything larger is a mistake (or an attack) and is refused unread.
MAX_JOB_FILE_BYTES = 1 << 20


class _JobFileLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses aliases (``*name``): a job file has no use for them, and nested
    aliases expand exponentially (a 1 KB "billion laughs" file becomes gigabytes once validated)."""

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, f"alias *{event.anchor} is not allowed in a job file; "
                                              "write the value out", event.start_mark)
        return super().compose_node(parent, index)


def read_job_yaml(path: Path) -> Any:
    """The YAML document in ``path``, read safely: at most :data:`MAX_JOB_FILE_BYTES`, UTF-8, no aliases, no
    tags beyond ``yaml.safe_load``'s; ``JobFileError`` in one line (file, line, column) otherwise."""
    size = path.stat().st_size
    if size > MAX_JOB_FILE_BYTES:
        raise JobFileError(f"{path}: {size:,} bytes; a job file is at most {MAX_JOB_FILE_BYTES:,} bytes")
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_JobFileLoader)  # noqa: S506  (a SafeLoader)
    except UnicodeDecodeError as error:
        raise JobFileError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise JobFileError(f"{path}: not a valid job file: {error.problem}{where}") from None
    except yaml.YAMLError as error:
        raise JobFileError(f"{path}: not a valid job file: {str(error).splitlines()[0]}") from None


def load_job(path: Path | str) -> JobConfig:
    """Read (:func:`read_job_yaml`) and validate a YAML job file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"job file {path} not found")
    data = read_job_yaml(path)
    if not isinstance(data, dict):
        raise JobFileError(f"{path}: a job file is a YAML mapping, got {type(data).__name__}")
    try:
        return parse_job(data, base=path.resolve().parent)
    except JobFileError as error:
        raise JobFileError(f"{path}:\n{error}") from None
