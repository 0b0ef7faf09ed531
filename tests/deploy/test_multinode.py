"""Multi-node proof on loopback: a Ray head and a second node (its own custom resources), a screening
job submitted through the Jobs API with token authentication, every candidate in the results once; then
the same with the second node killed mid-job, which the job survives without losing or repeating one."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.conftest import (
    assert_every_candidate_once,
    clean_env,
    free_port,
    kill_sessions,
    run_cli,
    small_job,
    stop,
    wait_for_port,
)

HEAD_IP = "127.0.0.2"  # Ray replaces 127.0.0.1 by the machine's outward address; the worker then gets 127.0.0.1
CANDIDATES = 300


@dataclass
class LoopbackCluster:
    url: str
    env: dict[str, str]
    worker: subprocess.Popen


def ray_node(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """``ray start ... --block`` in its own session: its node's processes stop with it."""
    common = ["--dashboard-agent-listen-port=0", f"--object-store-memory={200 << 20}", "--disable-usage-stats",
              "--log-style=record", "--block"]
    with log.open("w") as stream:
        return subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", *args, *common], env=env,
                                stdout=stream, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture
def cluster(tmp_path: Path, ray_tmp: Path) -> Iterator[LoopbackCluster]:
    port, dashboard = free_port(), free_port()
    env = clean_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32),
                    RAY_health_check_period_ms="500", RAY_health_check_failure_threshold="4")
    head = ray_node(["--head", f"--node-ip-address={HEAD_IP}", f"--port={port}", "--dashboard-host=127.0.0.1",
                     f"--dashboard-port={dashboard}", f"--ray-client-server-port={free_port()}", "--num-cpus=3",
                     f"--temp-dir={ray_tmp}"], env, tmp_path / "head.log")
    nodes = [head]
    try:
        wait_for_port(dashboard, head)
        nodes.append(ray_node([f"--address={HEAD_IP}:{port}", "--num-cpus=2", '--resources={"hybridmat_worker": 1}'],
                              env, tmp_path / "worker.log"))
        joined = subprocess.run([sys.executable, "-m", "hybridmat.deploy.nodes", "2", "--timeout", "60"],
                                env={**env, "RAY_ADDRESS": f"{HEAD_IP}:{port}"}, capture_output=True, text=True,
                                check=False)
        assert joined.returncode == 0, joined.stdout + joined.stderr
        yield LoopbackCluster(f"http://127.0.0.1:{dashboard}", env, nodes[1])
    finally:
        stop(nodes, tmp_path)


def submit(cluster: LoopbackCluster, tmp_path: Path, *extra: str, shard_size: int = 50) -> tuple[str, Path]:
    """Submit the small screening job (3 actors, which the head alone can host); its id and output dir."""
    job_file = small_job(tmp_path / "project", featurize_workers=2, shard_size=shard_size)
    result = run_cli("submit", str(job_file), "--to", cluster.url, "--remote-dir", str(tmp_path / "remote"),
                     *extra, env=cluster.env, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    submission_id = re.search(r"submitted (hybridmat-\S+) to", result.stdout).group(1)
    return submission_id, tmp_path / "remote" / submission_id / "runs" / "screen_small"


def state(cluster: LoopbackCluster, kind: str) -> list[dict]:
    """``ray list KIND --detail`` from the state API, with the cluster's token."""
    listed = subprocess.run([str(Path(sys.executable).with_name("ray")), "list", kind, "--detail", "--address",
                             cluster.url, "--format", "json", "--limit", "1000"], env=cluster.env,
                            capture_output=True, text=True, check=True)
    return json.loads(listed.stdout)


def screening_actors(cluster: LoopbackCluster) -> list[dict]:
    """The job's featurization and inference actors (node_id: where each lives last)."""
    return [actor for actor in state(cluster, "actors")
            if actor["class_name"] in ("ScreenFeaturizer", "InferenceWorker")]


@pytest.mark.slow
def test_screening_job_on_two_nodes_through_the_jobs_api(cluster: LoopbackCluster, tmp_path: Path) -> None:
    submission_id, out = submit(cluster, tmp_path, "--wait")
    assert_every_candidate_once(out, CANDIDATES)
    worker = {node["node_id"] for node in state(cluster, "nodes") if "hybridmat_worker" in node["resources_total"]}
    assert {actor["node_id"] for actor in screening_actors(cluster)} & worker, "no actor ran on the second node"
    status = run_cli("status", submission_id, "--address", cluster.url, env=cluster.env)
    assert f"{submission_id}: SUCCEEDED" in status.stdout
    logs = run_cli("logs", submission_id, "--address", cluster.url, env=cluster.env)
    assert f"{CANDIDATES} predictions in 6 shards" in logs.stdout
    refused = run_cli("status", submission_id, "--address", cluster.url, env=clean_env())
    assert refused.returncode == 2 and "refused this client's token" in refused.stderr


@pytest.mark.slow
def test_job_survives_losing_a_node_without_losing_or_repeating_a_candidate(
        cluster: LoopbackCluster, tmp_path: Path) -> None:
    submission_id, out = submit(cluster, tmp_path, shard_size=20)
    deadline = time.monotonic() + 150
    while not list((out / "shards").glob("part-*[0-9].parquet")):
        assert time.monotonic() < deadline, "the job committed no shard"
        time.sleep(0.1)
    kill_sessions({cluster.worker.pid})  # the node dies: raylet, object store, its actors and workers
    committed = len(list((out / "shards").glob("part-*[0-9].parquet")))
    cluster.worker.wait(10)
    logs = run_cli("logs", submission_id, "--address", cluster.url, "--follow", env=cluster.env, timeout=240)
    status = run_cli("status", submission_id, "--address", cluster.url, env=cluster.env)
    assert f"{submission_id}: SUCCEEDED" in status.stdout, logs.stdout
    assert_every_candidate_once(out, CANDIDATES)
    assert committed < CANDIDATES // 20, "the job had finished before the node was killed"
    restarted = [actor["class_name"] for actor in screening_actors(cluster) if actor["num_restarts"] > 0]
    assert restarted, "no actor was lost with the node (none restarted)"
