"""Feature store: atomic shards, resume without duplicates, every input accounted for."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hybridmat.data.records import StructureRecord
from hybridmat.data.source_strings import open_source
from hybridmat.data.writers import write_structure_table
from hybridmat.features.columns import table_to_batch
from hybridmat.features.featurizer import FeaturizerSettings, featurize_records
from hybridmat.features.pipeline import featurize_to_store
from hybridmat.features.store import FeatureStore, StoreMismatchError, shard_path
from tests.conftest import perovskite, rocksalt

SETTINGS = FeaturizerSettings(composition="magpie")


def _records(n: int) -> list[StructureRecord]:
    """``n`` distinct small structures with both targets."""
    cations = ["Li", "Na", "K", "Rb", "Mg", "Ca", "Sr", "Ba"]
    anions = ["F", "Cl", "Br", "I", "O", "S"]
    out = []
    for i in range(n):
        cation, anion = cations[i % len(cations)], anions[(i // len(cations)) % len(anions)]
        structure = rocksalt(4.5 + 0.05 * i, cation, anion)
        out.append(StructureRecord(f"r-{i}", structure, {"e_form": -1.0 - 0.01 * i, "band_gap": 0.1 * i}))
    return out


@pytest.fixture
def table(tmp_path: Path) -> Path:
    path = tmp_path / "input.parquet"
    write_structure_table(_records(25), path)
    return path


def _run(source: Path, out: Path, **kwargs):
    return featurize_to_store(open_source(str(source)), out, spec=str(source), settings=SETTINGS,
                              shard_size=10, progress=False, **kwargs)


def test_store_counts_and_shards(table: Path, tmp_path: Path) -> None:
    manifest = _run(table, tmp_path / "store")
    assert manifest["counts"] == {"inputs": 25, "rows": 25, "errors": 0, "shards": 3}
    assert manifest["status"] == "complete"
    assert manifest["schema_version"] == 1
    assert manifest["featurizer"]["composition"] == "magpie"
    store = FeatureStore(str(tmp_path / "store"))  # str paths work as well as Path
    assert store.read_table(["id"]).column("id").to_pylist() == [f"r-{i}" for i in range(25)]
    assert store.errors().num_rows == 0
    assert not list((tmp_path / "store").rglob("*.tmp"))


def test_stored_features_equal_fresh_featurization(table: Path, tmp_path: Path) -> None:
    _run(table, tmp_path / "store")
    stored = table_to_batch(FeatureStore(tmp_path / "store").read_table())
    fresh, errors = featurize_records(_records(25), SETTINGS, ("band_gap", "e_form"))
    assert not errors
    assert stored.ids == fresh.ids
    np.testing.assert_array_equal(stored.composition, fresh.composition)
    for name in fresh.targets:
        np.testing.assert_array_equal(stored.targets[name], fresh.targets[name])
    for a, b in zip(stored.graphs, fresh.graphs):
        for field in ("atomic_numbers", "edge_index", "edge_vec"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
            assert getattr(a, field).dtype == getattr(b, field).dtype


def test_rerun_skips_complete_shards_and_resumes(table: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    _run(table, out)
    first, last = shard_path(out, 0), shard_path(out, 2)
    first_mtime = first.stat().st_mtime_ns
    last.unlink()  # as if the run was killed before the last shard was committed
    manifest = _run(table, out)
    assert first.stat().st_mtime_ns == first_mtime
    assert last.exists()
    assert manifest["counts"]["rows"] == 25
    ids = FeatureStore(out).read_table(["id"]).column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 25


def test_other_input_refuses_unless_overwrite(table: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    _run(table, out)
    other = tmp_path / "other.parquet"
    write_structure_table(_records(12), other)
    with pytest.raises(StoreMismatchError, match="--overwrite"):
        _run(other, out)
    assert _run(other, out, overwrite=True)["counts"]["rows"] == 12
    assert len(list((out / "shards").glob("part-?????.parquet"))) == 2


def test_missing_targets_can_be_kept_as_nan(tmp_path: Path) -> None:
    good = json.dumps(perovskite().as_dict())
    source = tmp_path / "partial.jsonl"
    source.write_text(
        json.dumps({"id": "a", "structure": good, "e_form": -1.0, "band_gap": None}) + "\n"
        + json.dumps({"id": "b", "structure": good, "e_form": -2.0, "band_gap": 1.5}) + "\n"
    )
    manifest = featurize_to_store(open_source(str(source)), tmp_path / "store", spec=str(source),
                                  settings=SETTINGS, progress=False, require_targets=False)
    assert manifest["counts"]["rows"] == 2
    gaps = FeatureStore(tmp_path / "store").read_table(["band_gap"]).column("band_gap").to_pylist()
    assert np.isnan(gaps[0]) and gaps[1] == 1.5


def test_repeated_id_stays_an_error_across_reruns(tmp_path: Path) -> None:
    records = _records(12) + [StructureRecord("r-2", rocksalt(6.0), {"e_form": -0.5, "band_gap": 0.0})]
    path = tmp_path / "input.parquet"
    write_structure_table(records, path)
    expected = {"inputs": 13, "rows": 12, "errors": 1, "shards": 2}
    assert _run(path, tmp_path / "store")["counts"] == expected
    assert _run(path, tmp_path / "store")["counts"] == expected  # a rerun of a finished store
    shard_path(tmp_path / "store", 0).unlink()  # and a rerun after losing a shard
    assert _run(path, tmp_path / "store")["counts"] == expected
    [error] = FeatureStore(tmp_path / "store").errors().to_pylist()
    assert (error["index"], error["id"], error["stage"]) == (12, "r-2", "duplicate")
