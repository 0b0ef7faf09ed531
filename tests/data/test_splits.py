"""Splits: splits.json, seeded random splits, and Matbench's k folds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hybridmat.data.splits import kfold_splits, load_splits, random_split

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def matbench_ids(task: str, n: int) -> list[str]:
    """The ids matbench gives a task of ``n`` rows (``matbench.data_ops.load``)."""
    width = math.floor(math.log(n, 10)) + 1
    prefix = task.replace("matbench", "mb").replace("_", "-")
    return [f"{prefix}-{i + 1:0{width}d}" for i in range(n)]


@pytest.fixture
def splits_file(tmp_path: Path) -> Path:
    document = {
        "seed": 1,
        "source": "toy.parquet",
        "fractions": "60/20/20 random",
        "small": {"train": ["a", "b", "c"], "val": ["d"], "test": ["e"]},
        "label_disagreement_ids": ["c"],
    }
    path = tmp_path / "splits.json"
    path.write_text(json.dumps(document))
    return path


def test_load_splits(splits_file: Path) -> None:
    assert load_splits(splits_file, "small") == {"train": ["a", "b", "c"], "val": ["d"], "test": ["e"]}
    with pytest.raises(KeyError, match=r"available: \['small'\]"):
        load_splits(splits_file, "label_disagreement_ids")
    with pytest.raises(FileNotFoundError):
        load_splits(splits_file.parent / "none.json", "small")


def test_load_splits_rejects_overlapping_parts(tmp_path: Path) -> None:
    path = tmp_path / "splits.json"
    path.write_text(json.dumps({"bad": {"train": ["a", "b"], "test": ["b"]}}))
    with pytest.raises(ValueError, match="'b' is in both 'train' and 'test'"):
        load_splits(path, "bad")


@pytest.mark.parametrize("n", [1, 7, 10, 101, 36738])
def test_random_split_sizes_are_exact_and_parts_partition(n: int) -> None:
    ids = [f"id-{i}" for i in range(n)]
    split = random_split(ids, (0.8, 0.1, 0.1), seed=3)
    assert [len(split[k]) for k in ("val", "test")] == [math.floor(0.1 * n + 1e-9)] * 2
    assert sorted(split["train"] + split["val"] + split["test"]) == sorted(ids)
    assert split == random_split(ids, (0.8, 0.1, 0.1), seed=3)


def test_random_split_depends_on_seed_and_checks_input() -> None:
    ids = [str(i) for i in range(100)]
    assert random_split(ids, seed=0) != random_split(ids, seed=1)
    assert list(random_split(ids, (0.7, 0.3))) == ["train", "test"]
    assert len(random_split(ids, (0.7, 0.3))["test"]) == 30
    with pytest.raises(ValueError, match="sum to 1"):
        random_split(ids, (0.8, 0.1, 0.2))
    with pytest.raises(ValueError, match="duplicates"):
        random_split(["a", "a", "b"])


@pytest.mark.parametrize(
    ("task", "n"), [("matbench_jdft2d", 636), ("matbench_phonons", 1265), ("matbench_perovskites", 18928)]
)
def test_kfold_reproduces_matbench_folds(task: str, n: int) -> None:
    from matbench.metadata import mbv01_validation

    stored = mbv01_validation.splits[task]
    folds = kfold_splits(matbench_ids(task, n))
    assert len(folds) == len(stored) == 5
    for number, fold in enumerate(folds):
        assert fold["test"] == list(stored[f"fold_{number}"]["test"])
        assert fold["train"] == list(stored[f"fold_{number}"]["train"])


def test_kfold_partitions() -> None:
    ids = [f"x{i}" for i in range(23)]
    folds = kfold_splits(ids, n_folds=4, seed=7)
    assert sorted(i for fold in folds for i in fold["test"]) == sorted(ids)
    assert all(sorted(fold["train"] + fold["test"]) == sorted(ids) for fold in folds)


@pytest.mark.integration
def test_random_split_reproduces_the_canonical_full_split() -> None:
    directory = SHARED_DATA / "mp_cgcnn36k"
    if not (directory / "splits.json").exists():
        pytest.skip(f"{directory} not available")
    ids = pq.read_table(directory / "mp_cgcnn36k.parquet", columns=["id"]).column("id").to_pylist()
    seed = json.loads((directory / "splits.json").read_text())["seed"]
    assert random_split(ids, (0.8, 0.1, 0.1), seed=seed) == load_splits(directory / "splits.json", "full")
    small = load_splits(directory / "splits.json", "cpu_small")
    assert {k: len(v) for k, v in small.items()} == {"train": 4000, "val": 500, "test": 1000}
