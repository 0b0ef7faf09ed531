"""Starting or joining Ray: the embedded local cluster by default, a real cluster by address.

``ray_session()`` with no address (and no ``RAY_ADDRESS``) starts Ray inside this process: dashboard
off (or bound to 127.0.0.1 when asked for), object store sized to the machine's free memory, and every
server it opens (GCS, raylet, object manager, workers, agents, metrics) on loopback only: the node IP is
127.0.0.1 (see :func:`loopback_node_ip`), so nothing of a laptop run is reachable from the network. With an
address (``HOST:PORT`` of a GCS, ``ray://HOST:PORT`` of a Ray Client server, or ``auto``) it joins that
cluster; an address that does not answer fails within seconds, naming the address.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

import psutil

from hybridmat.console import UserError

LOCAL = "local"
#: Share of the available memory the embedded cluster's object store may use, and its cap.
OBJECT_STORE_SHARE = 0.3
OBJECT_STORE_CAP = 8 << 30
CONNECT_TIMEOUT_S = 5.0


class RayUnreachableError(UserError):
    """A Ray address that does not accept connections."""


def resolve_address(address: str | None) -> str | None:
    """``address``, else ``RAY_ADDRESS``; ``None`` (or ``local``) means the embedded local cluster."""
    chosen = address or os.environ.get("RAY_ADDRESS") or None
    return None if chosen in (None, LOCAL) else chosen


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise :class:`RayUnreachableError` unless ``address`` (``[ray://|http://]HOST:PORT``) accepts a TCP
    connection within ``timeout`` seconds. ``auto`` is left to Ray, which finds the local head itself."""
    if address == "auto":
        return
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if parsed.hostname is None or parsed.port is None:
        raise ValueError(f"Ray address {address!r} is not HOST:PORT, ray://HOST:PORT or http://HOST:PORT")
    try:
        with socket.create_connection((parsed.hostname, parsed.port), timeout=timeout):
            pass
    except OSError as error:
        raise RayUnreachableError(
            f"cannot reach Ray at {address} ({error.strerror or error}); start the cluster first "
            f"(`ray start --head`) or run locally without --address / RAY_ADDRESS"
        ) from None


#: Ray's switch for "single-machine Ray" (the default on macOS and Windows): with it off, Ray takes the
#: node IP to be the loopback address, and its servers then bind 127.0.0.1 instead of every interface.
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextmanager
def loopback_node_ip() -> Iterator[None]:
    """While an embedded cluster starts, make Ray resolve this node's IP to 127.0.0.1.

    ``ray.init(_node_ip_address="127.0.0.1")`` does not do it (Ray replaces a loopback address with the
    routable one); Ray's single-machine mode does. It is read from the environment when ``ray`` is first
    imported, so the constant is set for this process and the variable for the processes Ray spawns, and
    both are restored afterwards (a later ``ray.init(address=...)`` in this process must see the real IP).
    """
    import ray._private.ray_constants as ray_constants

    saved_env, saved_flag = os.environ.get(SINGLE_MACHINE_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[SINGLE_MACHINE_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(SINGLE_MACHINE_ENV, None)
        else:
            os.environ[SINGLE_MACHINE_ENV] = saved_env


def object_store_bytes() -> int:
    """Object-store size for the embedded cluster: a share of the memory available now, capped."""
    return int(min(OBJECT_STORE_SHARE * psutil.virtual_memory().available, OBJECT_STORE_CAP))


@contextmanager
def ray_session(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    dashboard: bool = False,
    dashboard_host: str = "127.0.0.1",
) -> Iterator[None]:
    """Ray for the duration of the block: joins ``address`` / ``RAY_ADDRESS`` or starts a local cluster.

    If Ray is already initialised (a test module's session, a Ray job's driver) it is used as is and
    left running. ``num_cpus``/``num_gpus`` size the local cluster only.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    target = resolve_address(address)
    options = {"logging_level": logging.WARNING, "configure_logging": True, "log_to_driver": True}
    if target is None:
        with loopback_node_ip():
            ray.init(
                num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=dashboard, dashboard_host=dashboard_host,
                object_store_memory=object_store_bytes(), **options,
            )
    else:
        check_reachable(target)
        ray.init(address=target, **options)
    try:
        yield
    finally:
        ray.shutdown()


def require_cpus(actors: int, what: str) -> None:
    """Raise ``ValueError`` when ``actors`` one-CPU actors cannot all be placed on the cluster's CPUs
    (they would wait forever and the run would hang without a word)."""
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 0))
    if actors > cpus:
        raise ValueError(f"{what} need {actors} CPUs but the Ray cluster has {cpus}: use fewer workers "
                         "or a bigger cluster")


def gpu_share(actors: int) -> float:
    """The GPUs each of ``actors`` actors asks for: an equal share of the cluster's (at most one each),
    0 on a cluster without GPUs."""
    import ray

    gpus = float(ray.cluster_resources().get("GPU", 0.0))
    return min(1.0, gpus / actors) if gpus else 0.0
