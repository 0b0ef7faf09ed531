"""A local two-CPU Ray for the test modules that ask for it (``pytestmark = pytest.mark.usefixtures("local_ray")``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import ray


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """Ray started once per module (2 CPUs, no dashboard), shut down after its last test."""
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    yield
    ray.shutdown()
