"""``hybridmat submit / status / logs``: one job file, any target; only ``--to`` changes.

Registered in :mod:`hybridmat.cli`. Every target validates the job file first (unknown keys, wrong types,
missing sections), so a bad job fails here, in a second, before any cluster is started or contacted.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hybridmat.config import JobConfig, JobFileError
from hybridmat.deploy.jobfile import COMMAND_SECTIONS, check_job
from hybridmat.deploy.submit import DEFAULT_REMOTE_DIR

console = Console()
errors = Console(stderr=True, style="red")
TARGETS = "local | ray://HOST:PORT | http://HOST:8265 | slurm | k8s"
#: Where `status` and `logs` find the Jobs API when --address is not given (as for `ray job`).
ADDRESS_ENV = ["RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"]
#: What a bad job file, a missing file, an unreachable or refusing cluster or a failed sbatch/kubectl raise:
#: reported in one line, exit status 2.
FAILURES = (JobFileError, ValueError, OSError, RuntimeError)

JobFileArg = Annotated[Path, typer.Argument(help="Job file (YAML), e.g. jobs/screen.yaml.")]
JobIdArg = Annotated[str, typer.Argument(help="Ray submission id printed by `hybridmat submit`.")]
AddressOpt = Annotated[str, typer.Option(envvar=ADDRESS_ENV,
                                         help="Jobs API: http://HOST:8265 or ray://HOST:PORT.")]


def _fail(error: Exception) -> typer.Exit:
    errors.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(2)


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def submit_command(
    job_file: JobFileArg,
    to: Annotated[str, typer.Option("--to", help=f"Target: {TARGETS}.")] = "local",
    command: Annotated[str, typer.Option(help=f"Command to run: {', '.join(COMMAND_SECTIONS)}.")] = "screen",
    remote_dir: Annotated[str, typer.Option(
        help="Ray targets: parent of the run directory on the head node (relative to its home unless "
             "absolute).")] = DEFAULT_REMOTE_DIR,
    wait: Annotated[bool, typer.Option(help="Ray targets: follow the logs until the job ends.")] = False,
    nodes: Annotated[int | None, typer.Option(help="Slurm: nodes (default: the script's).")] = None,
    cpus_per_node: Annotated[int | None, typer.Option(help="Slurm: CPUs per node.")] = None,
    gpus_per_node: Annotated[int | None, typer.Option(help="Slurm: GPUs per node.")] = None,
    time_limit: Annotated[str | None, typer.Option("--time", help="Slurm: time limit (04:00:00).")] = None,
    sbatch_option: Annotated[list[str] | None, typer.Option(
        help="Slurm: extra sbatch option, e.g. --sbatch-option=--partition=gpu (repeatable).")] = None,
    namespace: Annotated[str | None, typer.Option(help="Kubernetes: namespace.")] = None,
    template: Annotated[Path | None, typer.Option(
        help="Slurm script or RayCluster template (default: jobs/slurm/hybridmat.sbatch, "
             "jobs/k8s/raycluster.yaml).")] = None,
    dry_run: Annotated[bool, typer.Option(help="Slurm/Kubernetes: print what would be submitted.")] = False,
) -> None:
    """Run a job file on the embedded local Ray, a Ray cluster (Jobs API), Slurm or Kubernetes."""
    code = 0
    try:
        job = check_job(job_file, command)
        if to == "local":
            code = _run_local(job_file, command)
        elif to == "slurm":
            from hybridmat.deploy.slurm import SCRIPT, sbatch, sbatch_argv

            argv = sbatch_argv(job, job_file, command, script=template or SCRIPT, nodes=nodes,
                               cpus_per_node=cpus_per_node, gpus_per_node=gpus_per_node,
                               time_limit=time_limit, extra=tuple(sbatch_option or ()))
            _report_sbatch(argv, None if dry_run else sbatch(argv), dry_run)
        elif to == "k8s":
            from hybridmat.deploy.k8s import TEMPLATE, dump, kubectl_apply, render_rayjob

            manifests = render_rayjob(job, job_file, command, template=template or TEMPLATE,
                                      namespace=namespace)
            applied = None if dry_run else kubectl_apply(manifests)
            if applied is None and not dry_run:
                errors.print("kubectl is not on this machine; apply this with `kubectl apply -f -`:",
                             markup=False)
            print(applied or dump(manifests))
        else:
            code = _submit_ray(job, job_file, command, to, remote_dir, wait)
    except FAILURES as error:
        raise _fail(error) from None
    if code:
        raise typer.Exit(code)


def _run_local(job_file: Path, command: str) -> int:
    """``hybridmat COMMAND JOB_FILE`` in a child process on the embedded local Ray (``RAY_ADDRESS`` unset)."""
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    return subprocess.call([sys.executable, "-m", "hybridmat.cli", command, str(job_file)], env=env)


def _report_sbatch(argv: list[str], job_id: str | None, dry_run: bool) -> None:
    if job_id:
        _say(f"submitted Slurm job {job_id}")
        return
    if not dry_run:
        errors.print("sbatch is not on this machine; on the cluster's login node run:", markup=False)
    print(shlex.join(argv))


def _submit_ray(job: JobConfig, job_file: Path, command: str, address: str, remote_dir: str,
                wait: bool) -> int:
    """Submit through the Jobs API, print where the job runs and its outputs; with ``wait``, follow it."""
    from hybridmat.deploy.submit import follow_logs, submit_ray_job

    submission = submit_ray_job(job, job_file, command, address, remote_dir)
    _say(f"submitted {submission.submission_id} to {submission.url}; "
         f"it runs in {submission.run_dir} on the head node")
    for key, path in submission.outputs.items():
        _say(f"  {key}: {path}")
    if not wait:
        return 0
    status = follow_logs(address, submission.submission_id, lambda text: print(text, end="", flush=True))
    _say(f"{submission.submission_id}: {status}")
    return 0 if status == "SUCCEEDED" else 1


def status_command(job_id: JobIdArg, address: AddressOpt) -> None:
    """Status of a job submitted to a Ray cluster."""
    from hybridmat.deploy.submit import job_status

    try:
        status, message = job_status(address, job_id)
    except FAILURES as error:
        raise _fail(error) from None
    _say(f"{job_id}: {status}" + (f" ({message})" if message else ""))


def logs_command(
    job_id: JobIdArg,
    address: AddressOpt,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream lines until the job ends.")] = False,
) -> None:
    """Logs of a job submitted to a Ray cluster."""
    from hybridmat.deploy.submit import follow_logs, job_logs

    try:
        if follow:
            follow_logs(address, job_id, lambda text: print(text, end="", flush=True))
        else:
            print(job_logs(address, job_id), end="")
    except FAILURES as error:
        raise _fail(error) from None
