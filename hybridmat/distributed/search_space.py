"""Search spaces over dotted job-file keys: apply a sampled point onto a job, check a space, write the winner.

A trial's configuration is flat, ``{"train.lr": 0.003, "model.hyper.hidden": 64}``. Applying it re-validates
the whole job, so a misspelt key fails with the job-file error that names it. Only keys a trial can change
without refeaturizing or reloading the data are searchable: ``train.*`` (not ``train.epochs``: trials run
``tune.max_epochs``) and ``model.hyper.*`` (for late fusion not ``rf``: the forest is fitted once).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from hybridmat.atomic_io import atomic_write_bytes
from hybridmat.config import JobConfig, JobFileError, SearchDimension, parse_job
from hybridmat.models.base import PropertyModel, build_model, model_class
from hybridmat.models.late_fusion import LateFusion, LateFusionHyper
from hybridmat.training.trainer import build_loss
from hybridmat.workflows.train import train_config

SEARCHABLE = ("train.", "model.hyper.")
NOT_SEARCHABLE = {"train.epochs": "trials run tune.max_epochs epochs; set that instead",
                  "model.hyper.rf": "the forest is fitted once, before the search"}
#: Tune settings that define a search (the rest, such as resources and paths, may change on resume).
SEARCH_SETTINGS = ("space", "num_samples", "max_epochs", "grace_period", "reduction_factor", "searcher")


def _as_json(dimension: SearchDimension) -> bool:
    """A choice among lists or mappings (λ vectors): searchers such as Optuna take scalar choices only."""
    return dimension.choice is not None and any(isinstance(v, (list, dict)) for v in dimension.choice)


def encoded_choices(dimension: SearchDimension) -> list[Any]:
    """The choices as a searcher sees them: every value as JSON text when any is a list or mapping."""
    return [json.dumps(v) for v in dimension.choice] if _as_json(dimension) else list(dimension.choice)


def decode(space: Mapping[str, SearchDimension], sample: Mapping[str, Any]) -> dict[str, Any]:
    """``sample`` (a trial's configuration) with JSON-encoded choices turned back into their values."""
    return {key: json.loads(value) if _as_json(space[key]) else value for key, value in sample.items()}


def apply_sample(job: JobConfig, sample: Mapping[str, Any]) -> JobConfig:
    """``job`` with each dotted key of ``sample`` set, re-validated (:class:`JobFileError` names a bad key).

    Sampled λ are dropped when the weighting is ``uncertainty``: learned weights replace them.
    """
    data = copy.deepcopy(job.model_dump())
    for key, value in sample.items():
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            if node.get(part) is None:
                node[part] = {}
            if not isinstance(node[part], dict):
                raise JobFileError(f"tune.space key {key!r}: {part!r} holds a value, not a section")
            node = node[part]
        node[leaf] = value
    if "train.loss_lambdas" in sample and data["train"]["loss_weighting"] == "uncertainty":
        data["train"]["loss_lambdas"] = None
    return parse_job(data)


def trained_model(job: JobConfig) -> tuple[str, dict[str, Any]]:
    """The torch model a trial trains and its hyper-parameters (already checked against the model's schema
    when the job was parsed): the graph parent for late fusion."""
    name, hyper, cls = job.model.name, dict(job.model.hyper), model_class(job.model.name)
    if issubclass(cls, LateFusion):
        parents = LateFusionHyper(**hyper)
        return parents.graph_model, dict(parents.graph_hyper)
    if not issubclass(cls, PropertyModel):
        raise JobFileError(f"job {job.name!r}: `hybridmat tune` searches torch models and late fusion; "
                           f"{name!r} has no epochs to report")
    return name, hyper


def check_job(job: JobConfig) -> None:
    """Build the job's model and loss once (tiny composition width) so bad values fail before a search."""
    name, hyper = trained_model(job)
    n_targets = len(job.data.targets)
    build_model(name, **{"n_targets": n_targets, "composition_dim": 1, **hyper})
    build_loss(n_targets, train_config(job))


def _candidates(dimension: SearchDimension) -> Iterator[Any]:
    """Every choice, or both ends of a range: values that every sampled point lies between."""
    if dimension.choice is not None:
        yield from dimension.choice
    elif dimension.randint is not None:
        yield from (dimension.randint[0], dimension.randint[1] - 1)
    else:
        yield from dimension.uniform or dimension.loguniform


def check_space(job: JobConfig) -> None:
    """Raise :class:`JobFileError` naming the first ``tune.space`` key that cannot be searched, or one of
    whose values (each choice, both ends of a range) the job schema, the model or the loss rejects."""
    check_job(job)
    for key, dimension in job.tune.space.items():
        reasons = [why for prefix, why in NOT_SEARCHABLE.items() if f"{key}.".startswith(f"{prefix}.")]
        if not key.startswith(SEARCHABLE):
            reasons.append(f"searchable keys start with {list(SEARCHABLE)}")
        if reasons:
            raise JobFileError(f"tune.space key {key!r} cannot be searched: {reasons[0]}")
        for value in _candidates(dimension):
            try:
                check_job(apply_sample(job, {key: value}))
            except (JobFileError, TypeError, ValueError) as error:
                raise JobFileError(f"tune.space key {key!r} = {value!r}: {error}") from None


def search_identity(job: JobConfig) -> dict[str, Any]:
    """What defines a search: resuming one under another identity would mix two searches."""
    tune = job.tune.model_dump(mode="json", include=set(SEARCH_SETTINGS))
    return {**job.model_dump(mode="json", include={"data", "features", "model", "train"}), "tune": tune}


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested mappings."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [changed for key in sorted(set(old) | set(new), key=str)
                for changed in changed_keys(old.get(key), new.get(key), f"{prefix}.{key}".lstrip("."))]
    return [] if old == new else [prefix]


def write_best_job(job: JobConfig, sample: Mapping[str, Any], path: Path, header: list[str]) -> Path:
    """``job`` with ``sample`` applied, ``tune`` dropped, named ``<name>_best`` with output ``<output>_best``
    (so training it leaves the original job's artefacts alone), written atomically as commented YAML.
    Paths stay absolute, as loaded, so the file works from wherever it is written."""
    best = apply_sample(job, sample)
    data = best.model_dump(mode="json", exclude_none=True, exclude={"tune"})
    data.update(name=f"{job.name}_best", output=f"{job.output}_best")
    text = "".join(f"# {line}\n" for line in header) + yaml.safe_dump(data, sort_keys=False)
    atomic_write_bytes(path, text.encode())
    return path
