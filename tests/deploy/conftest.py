"""Helpers for the deployment tests: free ports, a clean environment, Ray nodes as local processes
(each in its own session, so a test stops exactly the processes it started), and the CLI."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml
from typer.testing import CliRunner, Result

from hybridmat.cli import app

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without Ray addresses or tokens, the venv first on PATH, plus ``extra``."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("RAY_ADDRESS", "RAY_AUTH", "RAY_API_SERVER"))}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return {**env, **extra}


def invoke(*args: str) -> Result:
    """``hybridmat submit/status/logs ...`` in this process (for paths that fail before Ray is imported)."""
    return CliRunner().invoke(app, list(args))


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """``hybridmat submit/status/logs ...`` in a child process, with its own environment and Ray client."""
    return subprocess.run([sys.executable, "-m", "hybridmat.cli", *args], env=env or clean_env(), capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, check=False)


def small_job(directory: Path, **screen: object) -> Path:
    """``jobs/screen_small.yaml`` copied under ``directory/jobs`` (its outputs land in ``directory/runs``)."""
    job = yaml.safe_load((REPO / "jobs" / "screen_small.yaml").read_text())
    job["screen"].update(screen)
    job_file = directory / "jobs" / "screen_small.yaml"
    job_file.parent.mkdir(parents=True, exist_ok=True)
    job_file.write_text(yaml.safe_dump(job, sort_keys=False))
    return job_file


def kill_sessions(session_ids: set[int], under: Path | None = None) -> None:
    """SIGKILL every process in ``session_ids`` (and any whose working directory is under ``under``)."""
    for process in psutil.process_iter(["pid"]):
        try:
            in_session = os.getsid(process.pid) in session_ids
            in_dir = under is not None and Path(process.cwd()).is_relative_to(under)
            if (in_session or in_dir) and process.pid != os.getpid():
                process.kill()
        except (psutil.Error, OSError):
            continue


def stop(processes: list[subprocess.Popen], under: Path | None = None, grace: float = 20.0) -> None:
    """SIGTERM each process (``ray start --block`` stops its node), then SIGKILL what is left of their sessions."""
    for process in reversed(processes):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    kill_sessions({process.pid for process in processes}, under)


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60.0) -> None:
    """Return once 127.0.0.1:``port`` accepts connections; fail if ``process`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"process {process.args} exited with {process.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@pytest.fixture
def ray_tmp() -> Iterator[Path]:
    """A short temporary directory for Ray (its socket paths must stay under ~100 characters)."""
    with tempfile.TemporaryDirectory(prefix="hm", dir="/tmp") as path:
        yield Path(path)


def assert_every_candidate_once(out: Path, count: int) -> None:
    """Every input row of a screening run is in exactly one prediction shard or in ``errors.parquet``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    shards = [p for p in sorted((out / "shards").glob("part-*.parquet")) if not p.name.endswith(".errors.parquet")]
    predictions = pa.concat_tables([pq.read_table(p, columns=["index", "id"]) for p in shards])
    errors = pq.read_table(out / "errors.parquet", columns=["index", "id"])
    indexes = predictions.column("index").to_pylist() + errors.column("index").to_pylist()
    ids = predictions.column("id").to_pylist()
    assert sorted(indexes) == list(range(count)), f"{len(indexes)} rows for {count} inputs"
    assert len(ids) == len(set(ids)) and predictions.num_rows > 0
