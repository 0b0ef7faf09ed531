"""Ensemble members trained concurrently on Ray actors equal the members trained one after another."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hybridmat.config import parse_job
from hybridmat.data.writers import write_structure_table
from hybridmat.distributed.train import member_resources, train_members_on_ray
from hybridmat.workflows.train import run_train_job
from tests.features.test_store import _records

pytestmark = pytest.mark.usefixtures("local_ray")


def _job(table: Path, output: Path) -> dict:
    return {
        "name": "ensemble", "data": {"source": str(table), "targets": ["e_form"], "store": str(output / "store")},
        "features": {"composition": "magpie"}, "model": {"name": "cgcnn", "hyper": {"hidden": 8, "n_conv": 1}},
        "train": {"epochs": 2, "batch_size": 8, "device": "cpu", "num_threads": 1},
        "ensemble": 2, "output": str(output / "out"),
    }


def test_members_on_actors_match_sequential_training(tmp_path: Path) -> None:
    table = tmp_path / "tiny.parquet"
    write_structure_table(_records(30), table)
    sequential = run_train_job(parse_job(_job(table, tmp_path / "sequential")), progress=False)
    parallel = run_train_job(parse_job(_job(table, tmp_path / "ray")), progress=False, runner=train_members_on_ray)
    assert [r["mae"] for r in parallel.rows] == pytest.approx([r["mae"] for r in sequential.rows], abs=1e-6)
    for k in range(2):
        left = torch.load(tmp_path / "sequential" / "out" / f"member-{k}" / "best.pt", weights_only=True)
        right = torch.load(tmp_path / "ray" / "out" / f"member-{k}" / "best.pt", weights_only=True)
        for name, tensor in left["state_dict"].items():
            torch.testing.assert_close(right["state_dict"][name], tensor)


def test_members_share_a_gpu_only_where_there_is_one() -> None:
    assert member_resources(4) == {"num_cpus": 1, "num_gpus": 0}  # this cluster has no GPU
