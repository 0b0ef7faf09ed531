"""The Slurm script, run for real: fake ``srun``/``scontrol`` start its Ray nodes as local processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from hybridmat.config import load_job
from hybridmat.deploy.slurm import SCRIPT, sbatch_argv
from tests.deploy.conftest import assert_every_candidate_once, clean_env, free_port, small_job, stop

FAKE_SLURM = Path(__file__).with_name("fake_slurm")


def test_sbatch_argv_names_the_job_safely(tmp_path: Path) -> None:
    job_file = small_job(tmp_path)
    job = load_job(job_file).model_copy(update={"name": "x; rm -rf ~ #"})
    argv = sbatch_argv(job, job_file, "screen", nodes=4, gpus_per_node=2, time_limit="01:00:00")
    assert argv == ["sbatch", "--parsable", "--job-name=hybridmat-x-rm-rf", "--nodes=4", "--gpus-per-node=2",
                    "--time=01:00:00", str(SCRIPT), "screen", str(job_file.resolve())]


def fake_slurm_env(tmp_path: Path, ray_tmp: Path, **extra: str) -> dict[str, str]:
    """A two-node allocation ``fake[1-2]`` with 2 CPUs per node, its Ray nodes on loopback addresses.

    The head advertises 127.0.0.2 (Ray replaces 127.0.0.1 by the machine's outward address); the
    worker then finds 127.0.0.1 as its own address towards it, so no traffic leaves the loopback range.
    """
    env = clean_env(
        SLURM_JOB_ID="4242", SLURM_JOB_NODELIST="fake[1-2]", SLURM_JOB_NUM_NODES="2", SLURM_CPUS_PER_TASK="2",
        SLURM_SUBMIT_DIR=str(tmp_path), FAKE_SLURM_LOG=str(tmp_path / "steps.jsonl"),
        HYBRIDMAT_HEAD_IP="127.0.0.2", HYBRIDMAT_RAY_PORT=str(free_port()), HYBRIDMAT_DASHBOARD_PORT=str(free_port()),
        HYBRIDMAT_CLIENT_PORT=str(free_port()), HYBRIDMAT_RAY_TEMP_DIR=str(ray_tmp),
        HYBRIDMAT_OBJECT_STORE_BYTES=str(200 << 20), HYBRIDMAT_JOIN_TIMEOUT="60",
    )
    env["PATH"] = os.pathsep.join([*extra.pop("prepend_path", "").split(os.pathsep), str(FAKE_SLURM), env["PATH"]])
    return {key: value for key, value in {**env, **extra}.items() if value}


def session_left(session_id: int, timeout: float = 15.0) -> list[str]:
    """Processes still running in ``session_id`` once ``timeout`` has passed (zombies do not count)."""
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for process in psutil.process_iter(["pid", "name", "status"]):
            try:
                if os.getsid(process.pid) == session_id and process.info["status"] != psutil.STATUS_ZOMBIE:
                    left.append(process.info["name"])
            except (psutil.Error, OSError):
                continue
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def test_fake_srun_ends_a_killed_step_like_slurmstepd(tmp_path: Path) -> None:
    """A SIGKILLed srun leaves nothing its tasks started (slurmstepd kills the step's cgroup)."""
    pid_file = tmp_path / "daemon.pid"
    env = {**os.environ, "SLURM_JOB_NODELIST": "fake1", "FAKE_SLURM_LOG": str(tmp_path / "steps.jsonl"),
           "PATH": os.pathsep.join([str(FAKE_SLURM), os.environ["PATH"]])}
    task = f"sleep 600 & echo $! > {pid_file}; wait"
    srun = subprocess.Popen([str(FAKE_SLURM / "srun"), "-N", "1", "sh", "-c", task], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists() or not pid_file.read_text().strip():
            assert time.monotonic() < deadline and srun.poll() is None
            time.sleep(0.1)
        daemon = psutil.Process(int(pid_file.read_text()))
        srun.kill()
        srun.wait()
        daemon.wait(timeout=10)  # raises TimeoutExpired if the step's process outlived its srun
    finally:
        stop([srun])


@pytest.mark.slow
def test_script_runs_the_job_on_a_two_node_ray_cluster_and_stops_it(tmp_path: Path, ray_tmp: Path) -> None:
    job_file = small_job(tmp_path)
    script = subprocess.Popen(["bash", str(SCRIPT), "screen", str(job_file)], env=fake_slurm_env(tmp_path, ray_tmp),
                              cwd=tmp_path, start_new_session=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = script.communicate(timeout=180)
        left = session_left(script.pid)
    finally:
        stop([script], tmp_path)
    assert script.returncode == 0, output
    assert "2 node(s), 2 CPUs and 0 GPUs per node" in output
    assert sorted(re.findall(r"node (127\.0\.0\.[12]): 2 CPUs, 0 GPUs", output)) == ["127.0.0.1", "127.0.0.2"]
    assert "all 2 Ray nodes joined" in output
    assert not re.search(r"\b[0-9a-f]{64}\b", output), "the Ray token must not be printed"
    assert left == [], f"processes left after the script exited: {left}"
    steps = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert [step["nodes"] for step in steps] == [["fake1"], ["fake2"]]
    assert all(step["options"]["cpus_per_task"] == "2" for step in steps)
    assert steps[0]["command"][:3] == ["ray", "start", "--head"] and "--num-cpus=2" in steps[1]["command"]
    assert_every_candidate_once(Path(load_job(job_file).screen.out), 300)


@pytest.mark.slow
def test_scancel_stops_the_driver_and_every_ray_node(tmp_path: Path, ray_tmp: Path) -> None:
    stand_in = tmp_path / "bin" / "hybridmat"
    stand_in.parent.mkdir()
    stand_in.write_text("#!/bin/sh\necho stand-in job running\nexec sleep 600\n")
    stand_in.chmod(0o755)
    log = tmp_path / "slurm.out"
    env = fake_slurm_env(tmp_path, ray_tmp, prepend_path=str(stand_in.parent))
    with log.open("w") as stream:
        script = subprocess.Popen(["bash", str(SCRIPT), "screen", str(small_job(tmp_path))], env=env, cwd=tmp_path,
                                  start_new_session=True, stdout=stream, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "stand-in job running" not in log.read_text():
            assert script.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        started = time.monotonic()
        script.send_signal(signal.SIGTERM)  # what scancel sends to the batch script
        script.wait(timeout=60)
        stopped_in = time.monotonic() - started
        left = session_left(script.pid)
    finally:
        stop([script], tmp_path)
    assert script.returncode == 143, log.read_text()
    assert "Ray cluster stopped (exit status 143)" in log.read_text()
    assert left == [], f"processes left after scancel: {left}"
    assert stopped_in < 45
