"""``hybridmat submit/status/logs``: validation first, fast failure on a dead address, what travels."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from hybridmat.deploy.jobfile import plan_travel
from hybridmat.deploy.submit import entrypoint, jobs_api_url, stage
from tests.deploy.conftest import (
    assert_every_candidate_once,
    clean_env,
    free_port,
    invoke,
    run_cli,
    small_job,
)


@pytest.mark.parametrize(
    ("address", "url"),
    [("http://10.0.0.5:8265", "http://10.0.0.5:8265"), ("https://ray.example.org:443/", "https://ray.example.org:443"),
     ("ray://head:10001", "http://head:8265")],
)
def test_ray_addresses_map_to_the_jobs_api(address: str, url: str) -> None:
    assert jobs_api_url(address) == url


def test_a_bare_host_port_is_refused() -> None:
    with pytest.raises(ValueError, match="'head:6379' is not ray://HOST:PORT, http://HOST:PORT"):
        jobs_api_url("head:6379")


@pytest.mark.parametrize("scheme", ["http", "ray"])
def test_unreachable_address_fails_within_seconds_naming_it(tmp_path: Path, scheme: str) -> None:
    address = f"{scheme}://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = invoke("submit", str(small_job(tmp_path)), "--to", address)
    assert time.monotonic() - started < 10
    assert result.exit_code == 2, result.output
    assert "cannot reach Ray at http://127.0.0.1:" in result.stderr
    assert address in result.stderr


def test_bad_job_fails_before_any_cluster_is_contacted(tmp_path: Path) -> None:
    job_file = small_job(tmp_path, featurize_wokers=2)
    for target in (f"http://127.0.0.1:{free_port()}", "slurm", "k8s", "local"):
        result = invoke("submit", str(job_file), "--to", target)
        assert result.exit_code == 2, (target, result.output)
        assert "unknown key 'screen.featurize_wokers'; allowed keys here: [" in result.stderr
        assert "'featurize_workers'" in result.stderr and "cannot reach" not in result.stderr


def test_missing_relative_input_fails_before_upload(tmp_path: Path) -> None:
    job_file = small_job(tmp_path, source="../data/pool.parquet")
    result = invoke("submit", str(job_file), "--to", f"http://127.0.0.1:{free_port()}")
    assert result.exit_code == 2
    assert f"input(s) not found: screen.source = {tmp_path.resolve() / 'data' / 'pool.parquet'}" in result.stderr


def test_status_and_logs_name_an_unreachable_address() -> None:
    address = f"http://127.0.0.1:{free_port()}"
    for command in ("status", "logs"):
        result = invoke(command, "hybridmat-x", "--address", address)
        assert result.exit_code == 2 and f"cannot reach Ray at {address}" in result.stderr


def test_entrypoint_rebuilds_the_layout_in_a_fresh_run_directory(tmp_path: Path) -> None:
    """The working_dir (job file + inputs) is copied into the run directory, where the job then runs."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "pool.parquet").write_text("rows")
    job_file = small_job(tmp_path / "project", source="../../data/pool.parquet")
    job_file.rename(job_file.with_name("it's a job.yaml"))
    plan = plan_travel(job_file.with_name("it's a job.yaml"))
    working_dir, home, bin_dir = tmp_path / "pkg", tmp_path / "home", tmp_path / "bin"
    stage(plan, working_dir)
    home.mkdir()
    bin_dir.mkdir()
    (bin_dir / "hybridmat").write_text('#!/bin/sh\necho "$PWD|$1|$2"\n')
    (bin_dir / "hybridmat").chmod(0o755)
    line = entrypoint("screen", plan.job_file, "hybridmat/submissions/s-1")
    env = {**os.environ, "HOME": str(home), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(line, shell=True, cwd=working_dir, env=env, capture_output=True, text=True, check=True)
    run_dir = home / "hybridmat" / "submissions" / "s-1"
    assert result.stdout.strip() == f"{run_dir}|screen|project/jobs/it's a job.yaml"
    assert (run_dir / "data" / "pool.parquet").read_text() == "rows"
    assert (run_dir / "project" / "jobs" / "it's a job.yaml").is_file()


def test_slurm_target_sbatches_the_script_with_the_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/argv\necho "4242;cluster"\n')
    (bin_dir / "sbatch").chmod(0o755)
    job_file = small_job(tmp_path)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    result = invoke("submit", str(job_file), "--to", "slurm", "--nodes", "3", "--gpus-per-node", "1",
                    "--sbatch-option=--partition=gpu")
    assert result.exit_code == 0, result.output
    assert "submitted Slurm job 4242" in result.stdout
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv[:2] == ["--parsable", "--job-name=hybridmat-screen-small"]
    assert {"--nodes=3", "--gpus-per-node=1", "--partition=gpu"} <= set(argv)
    assert argv[-3:] == [str(Path("jobs/slurm/hybridmat.sbatch").resolve()), "screen", str(job_file.resolve())]


def test_slurm_dry_run_prints_the_command(tmp_path: Path) -> None:
    result = invoke("submit", str(small_job(tmp_path)), "--to", "slurm", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("sbatch --parsable --job-name=hybridmat-screen-small ")


@pytest.mark.slow
def test_local_target_runs_the_job_on_the_embedded_ray(tmp_path: Path) -> None:
    job_file = small_job(tmp_path)
    result = run_cli("submit", str(job_file), "--to", "local", env=clean_env(RAY_ADDRESS="127.0.0.1:1"), timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_every_candidate_once(tmp_path / "runs" / "screen_small", 300)
