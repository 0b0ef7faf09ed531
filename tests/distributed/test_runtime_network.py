"""The embedded local Ray listens on loopback only: every socket of every process it starts."""

from __future__ import annotations

import ipaddress
import os

import psutil
import pytest

from hybridmat.distributed.runtime import SINGLE_MACHINE_ENV, ray_session

pytestmark = pytest.mark.slow


def _listening(process: psutil.Process) -> list[tuple[str, str, int]]:
    """``(process name, address, port)`` of each TCP socket ``process`` and its descendants listen on."""
    found = []
    for member in [process, *process.children(recursive=True)]:
        try:
            found += [(member.name(), c.laddr.ip, c.laddr.port) for c in member.net_connections(kind="tcp")
                      if c.status == psutil.CONN_LISTEN]
        except psutil.Error:  # a worker that exited meanwhile
            continue
    return found


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def test_every_ray_server_of_a_local_session_is_on_loopback() -> None:
    import ray

    if ray.is_initialized():
        pytest.skip("another test left Ray running; this test needs to start its own local cluster")
    before = os.environ.get(SINGLE_MACHINE_ENV)
    with ray_session(num_cpus=1):
        assert ray.get(ray.remote(lambda: os.getpid()).remote()) > 0  # a worker process is up
        assert ray.util.get_node_ip_address() == "127.0.0.1"
        sockets = _listening(psutil.Process())
    names = {name for name, _, _ in sockets}
    assert {"gcs_server", "raylet"} <= names, sockets  # the check saw Ray's servers, not nothing
    exposed = [entry for entry in sockets if not _is_loopback(entry[1])]
    assert exposed == [], f"listening beyond loopback: {exposed}"
    assert os.environ.get(SINGLE_MACHINE_ENV) == before  # a later ray.init(address=...) sees the real IP
