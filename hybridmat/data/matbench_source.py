"""Matbench v0.1 structure tasks, read through the matbench package with its own folds.

matbench loads a task's data with matminer's dataset loader, which keeps one file per dataset
(``<task>.json.gz``) in its cache directory: ``$MATMINER_DATA`` when set, else matminer's package folder
(``.../site-packages/matminer/datasets``). A missing file is downloaded from the URL in matminer's
dataset metadata; without network that fails and :class:`DatasetUnavailableError` says which file to put
where. matbench holds the whole task in memory once loaded (about 130k structures for ``mp_e_form``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import warnings
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from pymatgen.core import Structure

from hybridmat.console import UserError
from hybridmat.data.cif_dir import parse_target, short_message
from hybridmat.data.records import RecordError, SourceItem, StructureRecord
from hybridmat.data.source import Source, hash_strings
from hybridmat.data.splits import MATBENCH_N_FOLDS

#: Matbench target columns renamed to canonical names; other tasks keep matbench's target name.
#: ``matbench_perovskites`` is a heat of formation per 5-atom cell (eV), not MP's ``e_form`` (eV/atom).
CANONICAL_TARGETS = {
    "matbench_mp_e_form": "e_form",
    "matbench_mp_gap": "band_gap",
    "matbench_perovskites": "heat_of_formation_per_cell",
}
SPLITS = ("all", "train", "test")
CACHE_ENV = "MATMINER_DATA"
_HASH_MISMATCH = "Error, hash of downloaded file"


#: Loaded benchmarks by (task, cache file): matbench holds a whole task in memory, so load it once per process.
_LOADED: dict[tuple[str, str], Any] = {}


class DatasetUnavailableError(UserError):
    """A Matbench dataset is not in matminer's cache and could not be downloaded."""


@cache
def matbench_tasks() -> dict[str, dict[str, Any]]:
    """Matbench v0.1 task name -> its metadata (``input_type``, ``target``, ...), read from matbench's
    own metadata file without importing matbench (whose import loads a 46 MB fold file)."""
    spec = importlib.util.find_spec("matbench")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("the matbench package is not installed (pip install --no-deps matbench)")
    return json.loads((Path(spec.origin).parent / "matbench_v0.1_dataset_metadata.json").read_text())


def _package_dir() -> Path:
    """matminer's default dataset cache: its ``datasets`` package folder."""
    from matminer import datasets

    return Path(datasets.__file__).parent


def structure_tasks() -> list[str]:
    """Names of the Matbench tasks whose inputs are structures."""
    return sorted(name for name, meta in matbench_tasks().items() if meta["input_type"] == "structure")


class MatbenchSource(Source):
    """One Matbench v0.1 structure task, or one fold's ``train`` (train + validation) or ``test`` part.

    ``task`` is e.g. ``"matbench_mp_e_form"`` (the ``matbench_`` prefix may be left out). Ids are
    matbench's ``mb-...`` ids (``mb-mp-e-form-000001``); rows come in matbench's order. The target is
    renamed by :data:`CANONICAL_TARGETS`. Raises ``ValueError`` for an unknown or composition-only task,
    a bad split or fold. Iterating loads the data (downloading it if needed) and raises
    :class:`DatasetUnavailableError` when it cannot.
    """

    def __init__(self, task: str, fold: int | None = None, split: str = "all") -> None:
        tasks = matbench_tasks()
        name = task if task in tasks else f"matbench_{task}"
        if name not in tasks:
            raise ValueError(f"unknown Matbench task {task!r}; structure tasks: {structure_tasks()}")
        if tasks[name]["input_type"] != "structure":
            raise ValueError(
                f"Matbench task {name!r} has compositions, not structures, as inputs; "
                f"structure tasks: {structure_tasks()}"
            )
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if split == "all" and fold is not None:
            raise ValueError("fold selects a train/test part; use split='train' or 'test' with it")
        if split != "all" and fold not in range(MATBENCH_N_FOLDS):
            raise ValueError(f"split={split!r} needs fold in 0..{MATBENCH_N_FOLDS - 1}, got {fold!r}")
        self.task, self.fold, self.split = name, fold, split
        self.target_column = tasks[name]["target"]
        self.targets = (CANONICAL_TARGETS.get(name, self.target_column),)

    def load_benchmark(self) -> Any:
        """A ``MatbenchBenchmark`` holding this task, loaded (shared by every source of the task in this
        process), or :class:`DatasetUnavailableError`. Record predictions on its task and write it with
        ``to_file`` for a matbench-compatible results file."""
        from matbench.bench import MatbenchBenchmark
        from matminer.datasets.dataset_retrieval import get_dataset_attribute
        from matminer.datasets.utils import _get_data_home

        cached = Path(_get_data_home()) / f"{self.task}.{get_dataset_attribute(self.task, 'file_type')}"
        key = (self.task, str(cached))
        if key in _LOADED:
            return _LOADED[key]
        benchmark = MatbenchBenchmark(autoload=False, subset=[self.task])
        task = benchmark.tasks_map[self.task]
        existed = cached.exists()
        try:
            with warnings.catch_warnings():
                # matminer warns, then sleeps 60 s and retries 3 times, when a download has the wrong hash
                # (e.g. a proxy's error page); fail at once instead.
                warnings.filterwarnings("error", message=_HASH_MISMATCH, category=UserWarning)
                task.load()
        except (OSError, ValueError, EOFError, UserWarning) as exc:
            if not existed and cached.exists():
                cached.unlink()  # a partial or wrong download would otherwise be trusted next time
            raise DatasetUnavailableError(self._unavailable(cached, existed, exc)) from exc
        _LOADED[key] = benchmark
        return benchmark

    def _unavailable(self, cached: Path, existed: bool, exc: BaseException) -> str:
        """What failed, which file is needed from where, and how to put it in place by hand."""
        from matminer.datasets.dataset_retrieval import get_dataset_attribute

        url, sha256 = get_dataset_attribute(self.task, "url"), get_dataset_attribute(self.task, "hash")
        problem = (
            f"the cached file {cached} could not be read"
            if existed
            else f"it is not in matminer's cache and downloading {url} failed"
        )
        return (
            f"Matbench dataset {self.task!r} is unavailable: {problem} ({short_message(exc)}).\n"
            f"matminer looks for it at {cached}: its cache directory is ${CACHE_ENV} when set (now "
            f"{os.environ.get(CACHE_ENV, 'unset')}), else matminer's package folder {_package_dir()}.\n"
            f"To install it by hand: on a machine with network access download {url}, check that its "
            f"SHA-256 is {sha256}, and copy it to {cached} (or into the directory you point "
            f"{CACHE_ENV} at, keeping the name {cached.name})."
        )

    def __iter__(self) -> Iterator[SourceItem]:
        task = self.load_benchmark().tasks_map[self.task]
        if self.split == "all":
            frame = task.df
        elif self.split == "train":
            frame = task.get_train_and_val_data(self.fold, as_type="df")
        else:
            frame = task.get_test_data(self.fold, as_type="df", include_target=True)
        provenance = f"matbench_v0.1:{self.task}" + ("" if self.fold is None else f":fold{self.fold}")
        name = self.targets[0]
        for mbid, structure, value in zip(
            frame.index, frame["structure"], frame[self.target_column], strict=True
        ):
            if not isinstance(structure, Structure):
                yield RecordError(mbid, "read", f"input is a {type(structure).__name__}, not a Structure")
                continue
            try:
                target = parse_target(name, value)
            except ValueError as exc:
                yield RecordError(mbid, "read", str(exc))
                continue
            yield StructureRecord(mbid, structure, {name: target}, provenance=provenance)

    def fingerprint(self) -> str:
        """SHA-256 of the task, fold, split, matbench version and the dataset file's published hash."""
        from matminer.datasets.dataset_retrieval import get_dataset_attribute

        version = importlib.metadata.version("matbench")
        dataset_hash = get_dataset_attribute(self.task, "hash")
        return hash_strings("matbench", version, self.task, str(self.fold), self.split, dataset_hash)

    def describe(self) -> str:
        fold = "" if self.fold is None else f", fold={self.fold}"
        return f"MatbenchSource({self.task}{fold}, split={self.split}, target={self.targets[0]})"
