"""Job files before submission: validated first, and the paths that travel with them."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybridmat.config import JobFileError
from hybridmat.deploy.jobfile import check_job, plan_travel, slug
from tests.deploy.conftest import REPO


def test_shipped_screening_jobs_are_valid() -> None:
    for name in ("screen_small.yaml", "screen.yaml"):
        job = check_job(REPO / "jobs" / name, "screen")
        assert job.screen is not None and job.screen.source.startswith("candidates:")


@pytest.mark.parametrize(
    ("text", "command", "message"),
    [
        ("screen:\n  source: x.parquet\n  shard_sise: 5\n", "screen",
         "unknown key 'screen.shard_sise'; allowed keys here: ["),
        ("screen:\n  source: x.parquet\n  shard_size: many\n", "screen", "'screen.shard_size'"),
        ("name: x\n", "screen", "`hybridmat screen` needs the section(s) ['screen']"),
        ("screen:\n  source: x.parquet\n", "serve", "unknown command 'serve'; allowed: ['evaluate', 'screen'"),
    ],
)
def test_bad_job_is_named_before_anything_runs(tmp_path: Path, text: str, command: str, message: str) -> None:
    job_file = tmp_path / "job.yaml"
    job_file.write_text(text)
    with pytest.raises((JobFileError, ValueError)) as error:
        check_job(job_file, command)
    assert message in str(error.value)


def test_relative_paths_travel_with_their_layout(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "pool.parquet").write_bytes(b"x" * 10)
    (tmp_path / "data" / "splits.json").write_text("{}")
    job_file = tmp_path / "project" / "jobs" / "job.yaml"
    job_file.parent.mkdir(parents=True)
    job_file.write_text("screen:\n  source: ../../data/pool.parquet?limit=5\n  out: ../runs/s\n"
                        "  models: [/abs/member-0.pt, ../models/member-1.pt]\n")
    plan = plan_travel(job_file)
    assert plan.root == tmp_path.resolve()
    assert plan.job_file == Path("project/jobs/job.yaml")
    assert plan.inputs == {"screen.source": Path("data/pool.parquet"),
                           "screen.models.1": Path("project/models/member-1.pt")}
    assert plan.outputs["screen.out"] == Path("project/runs/s")
    assert plan.missing_inputs() == {"screen.models.1": Path("project/models/member-1.pt")}
    (tmp_path / "project" / "models").mkdir()
    (tmp_path / "project" / "models" / "member-1.pt").write_bytes(b"y" * 5)
    assert plan.upload_paths() == [Path("data/pool.parquet"), Path("data/splits.json"),
                                   Path("project/jobs/job.yaml"), Path("project/models/member-1.pt")]
    assert plan.upload_bytes() == 10 + 2 + job_file.stat().st_size + 5


def test_scheme_sources_do_not_travel() -> None:
    plan = plan_travel(REPO / "jobs" / "screen_small.yaml")
    assert plan.inputs == {} and plan.root == REPO
    assert plan.outputs["screen.out"] == Path("runs/screen_small")


@pytest.mark.parametrize(("name", "expected"),
                         [("Screen small!", "screen-small"), ("$(rm -rf ~)", "rm-rf"), ("", "job")])
def test_slug_is_safe_in_every_scheduler(name: str, expected: str) -> None:
    assert slug(name) == expected
