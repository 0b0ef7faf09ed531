"""``--to slurm``: sbatch the Ray-on-Slurm script ``jobs/slurm/hybridmat.sbatch`` for a job file.

The script is generic (``sbatch hybridmat.sbatch COMMAND JOB.yaml``); what varies per job is set with
sbatch's own options, which override the script's ``#SBATCH`` defaults: the job name (a slug of the job
file's ``name``), nodes, CPUs and GPUs per node, time limit. The command is built as an argument list and
run without a shell, so nothing in a job file can inject a command.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from hybridmat.config import JobConfig
from hybridmat.deploy.jobfile import slug

SCRIPT = Path(__file__).resolve().parents[2] / "jobs" / "slurm" / "hybridmat.sbatch"


def sbatch_argv(job: JobConfig, job_file: Path, command: str, *, script: Path = SCRIPT,
                nodes: int | None = None, cpus_per_node: int | None = None, gpus_per_node: int | None = None,
                time_limit: str | None = None, extra: tuple[str, ...] = ()) -> list[str]:
    """The ``sbatch`` command line that runs ``hybridmat COMMAND JOB_FILE`` on a Ray cluster in the
    allocation."""
    if not Path(script).is_file():
        raise FileNotFoundError(f"Slurm script {script} not found; "
                                "pass the path of jobs/slurm/hybridmat.sbatch")
    options = {"--nodes": nodes, "--cpus-per-task": cpus_per_node, "--gpus-per-node": gpus_per_node,
               "--time": time_limit}
    return [
        "sbatch", "--parsable", f"--job-name=hybridmat-{slug(job.name)}",
        *(f"{flag}={value}" for flag, value in options.items() if value is not None),
        *extra, str(script), command, str(Path(job_file).resolve()),
    ]


def sbatch(argv: list[str]) -> str | None:
    """Run ``argv`` and return the Slurm job id, or ``None`` when ``sbatch`` is not on this machine."""
    if shutil.which(argv[0]) is None:
        return None
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"sbatch failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout.strip().split(";")[0]
