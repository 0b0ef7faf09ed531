"""``python -m hybridmat.deploy.nodes COUNT``: wait until COUNT Ray nodes are alive in the cluster at
``RAY_ADDRESS`` (the Slurm script runs it before the job, so no work starts on half a cluster)."""

from __future__ import annotations

import argparse
import sys
import time


def wait_for_nodes(count: int, timeout: float, poll: float = 1.0) -> list[dict]:
    """The alive nodes once ``count`` of them have joined; ``TimeoutError`` naming how many did."""
    import ray

    from hybridmat.distributed.runtime import ray_session

    with ray_session():
        deadline = time.monotonic() + timeout
        while True:
            alive = [node for node in ray.nodes() if node["Alive"]]
            if len(alive) >= count:
                return alive
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(alive)} of {count} Ray nodes joined within {timeout:.0f} s; "
                                   "see the Ray logs of the missing nodes")
            time.sleep(poll)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: print the joined nodes' resources, exit 1 on timeout."""
    parser = argparse.ArgumentParser(prog="python -m hybridmat.deploy.nodes", description=__doc__)
    parser.add_argument("count", type=int, help="Ray nodes to wait for")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before giving up")
    args = parser.parse_args(argv)
    try:
        alive = wait_for_nodes(args.count, args.timeout)
    except TimeoutError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for node in alive:
        resources = node["Resources"]
        cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
        print(f"node {node['NodeManagerAddress']}: {cpus:g} CPUs, {gpus:g} GPUs")
    print(f"all {len(alive)} Ray nodes joined")
    return 0


if __name__ == "__main__":
    sys.exit(main())
