"""What a job file needs before it is submitted, and which of its paths travel with it.

A job file is validated here, before any cluster is touched: unknown keys, wrong types and missing
sections fail at once (``load_job`` names the key and the allowed values). Relative paths in a job file
are resolved against the job file's directory (``hybridmat.config``); :func:`plan_travel` finds them, so
that a submission can rebuild the same layout on the cluster and the paths resolve there as they do here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hybridmat.config import JobConfig, load_job, parse_job

#: Sections each cluster-side command needs (``JobConfig.require``).
COMMAND_SECTIONS: dict[str, tuple[str, ...]] = {
    "screen": ("screen",),
    "train": ("data", "model"),
    "evaluate": ("data", "model"),
    "tune": ("data", "model", "tune"),
}
#: Job keys that name inputs (read, never written); every other resolved path is an output.
INPUT_KEYS = frozenset({"data.source", "data.splits", "screen.source", "screen.models"})


def check_job(job_file: Path, command: str) -> JobConfig:
    """The validated job, or :class:`~hybridmat.config.JobFileError` / ``ValueError`` naming what is wrong."""
    if command not in COMMAND_SECTIONS:
        raise ValueError(f"unknown command {command!r}; allowed: {sorted(COMMAND_SECTIONS)}")
    job = load_job(job_file)
    job.require(command, *COMMAND_SECTIONS[command])
    return job


def slug(name: str, max_length: int = 40) -> str:
    """``name`` as lower-case letters, digits and dashes: safe in Slurm, Kubernetes and Ray job names."""
    cleaned = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:max_length].strip("-")
    return cleaned or "job"


@dataclass(frozen=True)
class TravelPlan:
    """The job file and the paths it names relative to itself, all relative to a common ``root``."""

    root: Path
    job_file: Path
    inputs: dict[str, Path]
    outputs: dict[str, Path]

    def missing_inputs(self) -> dict[str, Path]:
        """Inputs that do not exist under ``root`` here."""
        return {key: path for key, path in self.inputs.items() if not (self.root / path).exists()}

    def upload_paths(self) -> list[Path]:
        """The job file, the inputs, and the ``splits.json`` beside a table input (its default splits)."""
        paths = [self.job_file, *self.inputs.values()]
        paths += [p.with_name("splits.json") for p in self.inputs.values()
                  if (self.root / p).is_file() and (self.root / p.with_name("splits.json")).is_file()]
        return sorted(set(paths))

    def upload_bytes(self) -> int:
        """Total size of :meth:`upload_paths` (directories counted file by file)."""
        total = 0
        for path in self.upload_paths():
            full = self.root / path
            files = [full] if full.is_file() else [p for p in full.rglob("*") if p.is_file()]
            total += sum(f.stat().st_size for f in files)
        return total


def plan_travel(job_file: Path) -> TravelPlan:
    """Find the paths ``job_file`` names relative to itself (those ``hybridmat.config`` resolves).

    They are the leaves that differ between the job parsed without a base directory and the job as
    ``load_job`` resolves it; scheme sources (``candidates:``, ``mp:``, ``matbench:``) and absolute
    paths are equal in both and stay where they are.
    """
    job_file = Path(job_file).resolve()
    resolved = _leaves(load_job(job_file).model_dump())
    as_written = _leaves(parse_job(yaml.safe_load(job_file.read_text())).model_dump())
    relative = {key: Path(value.partition("?")[0])
                for key, value in resolved.items() if value != as_written[key]}
    root = Path(os.path.commonpath([job_file.parent, *relative.values()]))
    inside = {key: path.relative_to(root) for key, path in relative.items()}
    is_input = {key: re.sub(r"\.\d+$", "", key) in INPUT_KEYS for key in inside}
    return TravelPlan(
        root=root,
        job_file=job_file.relative_to(root),
        inputs={key: path for key, path in inside.items() if is_input[key]},
        outputs={key: path for key, path in inside.items() if not is_input[key]},
    )


def _leaves(value: Any, prefix: str = "") -> dict[str, str]:
    """String leaves of a nested dump, keyed by dotted path (list items by index)."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return {prefix: value} if isinstance(value, str) else {}
    found: dict[str, str] = {}
    for key, item in items:
        found.update(_leaves(item, f"{prefix}.{key}" if prefix else str(key)))
    return found
