"""Ray targets through the Ray Jobs API: the job file and its relative inputs travel as the working_dir.

On the cluster the job runs in a fresh directory, ``REMOTE_DIR/<submission id>`` on the head node
(relative to the home directory there unless absolute), into which the working_dir is copied first. The
job file and its inputs keep their places relative to each other (see
:func:`hybridmat.deploy.jobfile.plan_travel`), so relative inputs resolve as they do here and relative
outputs land in that directory, not in Ray's shared package cache. Absolute paths and scheme sources
(``candidates:``, ``mp:``, ``matbench:``) are used on the cluster as written; secrets such as
``MP_API_KEY`` must be set there, they never travel with a job.
"""

from __future__ import annotations

import asyncio
import secrets
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from hybridmat.config import JobConfig
from hybridmat.deploy.jobfile import TravelPlan, plan_travel, slug
from hybridmat.distributed.runtime import RayUnreachableError, check_reachable

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

DEFAULT_REMOTE_DIR = "hybridmat/submissions"
#: The Ray dashboard (Jobs API) port on a head reached by its Ray Client address.
DASHBOARD_PORT = 8265
#: Upload cap for the job file and its inputs; larger inputs belong on the cluster, named by absolute path.
MAX_UPLOAD_BYTES = 200 << 20


def jobs_api_url(address: str) -> str:
    """The Jobs API URL for ``address``: ``http(s)://HOST:PORT`` as given, ``ray://HOST:PORT`` mapped to the
    dashboard of the same head (``http://HOST:8265``), since a Ray Client server takes no job submissions."""
    parsed = urlparse(address)
    if parsed.scheme in ("http", "https"):
        return address.rstrip("/")
    if parsed.scheme == "ray" and parsed.hostname:
        return f"http://{parsed.hostname}:{DASHBOARD_PORT}"
    raise ValueError(f"Ray address {address!r} is not ray://HOST:PORT, http://HOST:PORT or https://HOST:PORT")


def jobs_client(address: str) -> JobSubmissionClient:
    """A Jobs API client; an address that does not answer fails within seconds, naming it, and a cluster
    that refuses the token (``RAY_AUTH_TOKEN`` / ``RAY_AUTH_TOKEN_PATH``) raises ``PermissionError``."""
    url = jobs_api_url(address)
    try:
        check_reachable(url)
    except RayUnreachableError as error:
        via = f" (the Jobs API of {address})" if url != address else ""
        raise RayUnreachableError(f"{error}{via}") from None
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(url)
    except AuthenticationError as error:
        raise PermissionError(f"Ray at {url} refused this client's token: {error}") from None


@dataclass(frozen=True)
class Submission:
    """A submitted Ray job: its id, where it runs on the head node, and where its outputs land."""

    submission_id: str
    url: str
    run_dir: str
    outputs: dict[str, str]


def stage(plan: TravelPlan, into: Path) -> None:
    """Copy the job file and its inputs into ``into`` at their places relative to ``plan.root``."""
    for relative in plan.upload_paths():
        source, target = plan.root / relative, into / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)


def entrypoint(command: str, job_file: Path, run_dir: str) -> str:
    """Shell line run on the head: copy the working_dir into ``run_dir``, then ``hybridmat COMMAND JOB``."""
    target = shlex.quote(run_dir)
    return " && ".join([
        'src="$PWD"', "cd", f"mkdir -p {target}", f'cp -R "$src"/. {target}', f"cd {target}",
        shlex.join(["hybridmat", command, job_file.as_posix()]),
    ])


def submit_ray_job(job: JobConfig, job_file: Path, command: str, address: str,
                   remote_dir: str = DEFAULT_REMOTE_DIR) -> Submission:
    """Submit ``hybridmat COMMAND JOB_FILE`` to the cluster at ``address`` through the Jobs API."""
    plan = plan_travel(job_file)
    missing = plan.missing_inputs()
    if missing:
        listed = ", ".join(f"{key} = {plan.root / path}" for key, path in missing.items())
        raise FileNotFoundError(f"job {job.name!r}: input(s) not found: {listed}; fix the path, or name a "
                                "file that exists on the cluster by its absolute path")
    size = plan.upload_bytes()
    if size > MAX_UPLOAD_BYTES:
        inputs = sorted(map(str, plan.inputs.values()))
        raise ValueError(f"job {job.name!r}: the job file and its inputs {inputs} are {size / 2**20:.0f} "
                         f"MiB, over the {MAX_UPLOAD_BYTES >> 20} MiB upload limit; put large inputs on the "
                         "cluster and name them by absolute path")
    client = jobs_client(address)
    submission_id = f"hybridmat-{slug(job.name)}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    run_dir = f"{remote_dir.rstrip('/')}/{submission_id}"
    with tempfile.TemporaryDirectory(prefix="hybridmat-submit-") as staging:
        stage(plan, Path(staging))
        client.submit_job(
            entrypoint=entrypoint(command, plan.job_file, run_dir),
            submission_id=submission_id,
            runtime_env={"working_dir": staging},
            metadata={"hybridmat_job": job.name, "hybridmat_command": command},
        )
    outputs = {key: f"{run_dir}/{path.as_posix()}" for key, path in plan.outputs.items()}
    return Submission(submission_id, jobs_api_url(address), run_dir, outputs)


def job_status(address: str, job_id: str) -> tuple[str, str]:
    """Status (``PENDING``, ``RUNNING``, ``SUCCEEDED``, ``FAILED``, ``STOPPED``) and message of a Ray job."""
    info = jobs_client(address).get_job_info(job_id)
    return str(info.status), info.message or ""


def follow_logs(address: str, job_id: str, write: Callable[[str], None]) -> str:
    """Stream a Ray job's logs to ``write`` until the job ends; returns its final status."""
    client = jobs_client(address)

    async def tail() -> None:
        async for lines in client.tail_job_logs(job_id):
            write(lines)

    asyncio.run(tail())
    return str(client.get_job_status(job_id))


def job_logs(address: str, job_id: str) -> str:
    """All logs a Ray job has written so far."""
    return jobs_client(address).get_job_logs(job_id)
