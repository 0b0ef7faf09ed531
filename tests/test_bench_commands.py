"""The throughput benchmarks' code paths on a tiny store (on the CPU; AMP is a no-op there)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hybridmat.cli import app
from hybridmat.data.source_strings import open_source
from hybridmat.data.writers import write_structure_table
from hybridmat.features.featurizer import FeaturizerSettings
from hybridmat.features.pipeline import featurize_to_store
from tests.features.test_store import _records


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("bench")
    source = directory / "in.parquet"
    write_structure_table(_records(12), source)
    featurize_to_store(open_source(str(source)), directory / "store", spec=str(source),
                       settings=FeaturizerSettings(composition="magpie"), progress=False)
    return directory / "store"


def _invoke(args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_bench_gpu_runs_on_cpu(store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "gpu.json"
    _invoke(["bench", "gpu", "--store", str(store), "--n", "12", "--epochs", "2", "--device", "cpu",
             "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [r["model"] for r in rows] == ["cgcnn", "early_fusion", "alignn"]
    assert all(r["fp32"]["train_per_s"] > 0 and r["amp"]["infer_per_s"] > 0 for r in rows)


def test_bench_training_compares_three_ways(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "training.json"
    _invoke(["bench", "training", "--store", str(store), "--n", "12", "--threads", "1", "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 3 and all(r["collate_per_s"] > 0 and r["train_per_s"] > 0 for r in rows)


def test_bench_training_times_the_trainer_on_each_size(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "training.json"
    _invoke(["bench", "training", "--store", str(store), "--n", "6,12", "--threads", "1", "--json", str(out)])
    sizes = json.loads(out.read_text())["sizes"]
    assert [s["n"] for s in sizes] == [6, 12] and all(s["train_per_s"] > 0 and s["mean_sites"] > 0 for s in sizes)


def test_bench_training_samples_rows_at_random_not_the_first_ones() -> None:
    import pyarrow as pa

    from hybridmat.bench.data import sample_table as sample

    table = pa.table({"i": list(range(100))})
    chosen = sample(table, 10).column("i").to_pylist()
    assert chosen == sorted(chosen) and chosen != list(range(10)) and sample(table, 10).equals(sample(table, 10))
    assert sample(table, 500).num_rows == 100


def test_bench_training_refuses_bad_sizes(store: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "training", "--store", str(store), "--n", "12,x"])
    assert result.exit_code == 2 and "whole numbers" in result.output
