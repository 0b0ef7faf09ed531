"""Featurization on Ray actors writes the same store as the single-process path."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from hybridmat.data.records import RecordError, SourceItem, StructureRecord
from hybridmat.data.source import Source
from hybridmat.data.source_strings import open_source
from hybridmat.data.writers import write_structure_table
from hybridmat.distributed.featurize import featurize_with_ray
from hybridmat.features.featurizer import FeaturizerSettings
from hybridmat.features.pipeline import featurize_to_store
from hybridmat.features.store import FeatureStore, read_manifest, shard_path
from tests.conftest import perovskite, rocksalt

SETTINGS = FeaturizerSettings(composition="magpie")
IDENTITY = ("input_hash", "featurizer", "targets", "shard_size", "counts", "errors_by_stage", "source")


pytestmark = pytest.mark.usefixtures("local_ray")


def _records() -> list[StructureRecord]:
    """23 rows: valid rocksalts and perovskites, one element without data, one repeated id."""
    records = [StructureRecord(f"rs-{i}", rocksalt(4.6 + 0.05 * i), {"e_form": -1.0 - 0.01 * i}) for i in range(18)]
    records += [StructureRecord(f"pv-{i}", perovskite(3.9 + 0.02 * i), {"e_form": -2.0}) for i in range(3)]
    records.append(StructureRecord("og", rocksalt(5.0, "Og", "Cl"), {"e_form": -0.5}))
    records.append(StructureRecord("rs-3", rocksalt(6.0), {"e_form": -0.7}))
    return records


@pytest.fixture
def table(tmp_path: Path) -> Path:
    path = tmp_path / "input.parquet"
    write_structure_table(_records(), path)
    return path


def _same_store(a: Path, b: Path) -> None:
    left, right = FeatureStore(a), FeatureStore(b)
    assert left.read_table().equals(right.read_table())
    assert left.errors().equals(right.errors())
    assert {k: read_manifest(a)[k] for k in IDENTITY} == {k: read_manifest(b)[k] for k in IDENTITY}


def test_two_workers_write_the_single_process_store(table: Path, tmp_path: Path) -> None:
    options = dict(spec=str(table), settings=SETTINGS, shard_size=5, progress=False)
    single = featurize_to_store(open_source(str(table)), tmp_path / "single", **options)
    parallel = featurize_with_ray(open_source(str(table)), tmp_path / "ray", workers=2, **options)
    assert parallel["counts"] == single["counts"] == {"inputs": 23, "rows": 21, "errors": 2, "shards": 5}
    _same_store(tmp_path / "single", tmp_path / "ray")
    assert set(FeatureStore(tmp_path / "ray").errors().column("stage").to_pylist()) == {"featurize", "duplicate"}


class UncountedSource(Source):
    """A stream that cannot seek (like a paged API): the driver reads it and ships the items."""

    def __init__(self, records: list[StructureRecord]) -> None:
        self.records = records

    def __iter__(self) -> Iterator[SourceItem]:
        yield from self.records
        yield RecordError("broken", "parse", "not a structure")

    def fingerprint(self) -> str:
        return "uncounted-" + ",".join(r.id for r in self.records)


def test_source_without_count_and_resume(tmp_path: Path) -> None:
    source = UncountedSource(_records()[:12])
    options = dict(spec="uncounted", settings=FeaturizerSettings(composition="magpie"), shard_size=4,
                   progress=False, require_targets=False)
    featurize_with_ray(source, tmp_path / "ray", workers=2, **options)
    first = FeatureStore(tmp_path / "ray").read_table()
    shard_path(tmp_path / "ray", 1).unlink()  # an interrupted run: shard 1 never committed
    manifest = featurize_with_ray(source, tmp_path / "ray", workers=2, **options)
    assert FeatureStore(tmp_path / "ray").read_table().equals(first)
    assert manifest["counts"] == {"inputs": 13, "rows": 12, "errors": 1, "shards": 4}
    ids = FeatureStore(tmp_path / "ray").read_table(["id"]).column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 12
    assert list(itertools.chain(ids)) == [r.id for r in source.records]


def test_more_workers_than_cpus_is_refused_not_a_silent_hang(table: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="need 3 CPUs but the Ray cluster has 2"):
        featurize_with_ray(open_source(str(table)), tmp_path / "ray", spec=str(table), workers=3, progress=False)
    assert not (tmp_path / "ray" / "manifest.json").exists()
