"""``--to k8s``: a KubeRay ``RayJob`` for a job file, built from the RayCluster ``jobs/k8s/raycluster.yaml``.

The cluster's shape (image, head, CPU and GPU worker groups, volumes, token authentication) lives in that
RayCluster; the RayJob reuses its spec as ``rayClusterSpec``, mounts the job file from a ConfigMap on the
head at ``/hybridmat/jobs/job.yaml`` and runs ``hybridmat COMMAND /hybridmat/jobs/job.yaml`` there, so
``out: ../runs/...`` lands on the volume the template mounts at ``/hybridmat/runs`` (inputs named by a
relative path must be on that volume too). Manifests are built as data and written with a safe YAML
dumper; names are slugs of the job name, the entrypoint is shell-quoted.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from hybridmat.config import JobConfig
from hybridmat.deploy.jobfile import slug

TEMPLATE = Path(__file__).resolve().parents[2] / "jobs" / "k8s" / "raycluster.yaml"
JOBS_MOUNT = "/hybridmat/jobs"
JOB_KEY = "job.yaml"
#: How long KubeRay keeps a finished RayJob's cluster around for its logs.
TTL_SECONDS = 600


def render_rayjob(job: JobConfig, job_file: Path, command: str, *, template: Path = TEMPLATE,
                  namespace: str | None = None) -> list[dict[str, Any]]:
    """The ConfigMap holding the job file and the RayJob that runs ``hybridmat COMMAND`` on it."""
    if not Path(template).is_file():
        raise FileNotFoundError(f"RayCluster template {template} not found; "
                                "pass the path of jobs/k8s/raycluster.yaml")
    cluster = yaml.safe_load(Path(template).read_text())
    name = f"hybridmat-{slug(job.name, 30)}"
    labels = {"app.kubernetes.io/name": "hybridmat", "hybridmat/job": slug(job.name, 63)}
    metadata = {"labels": labels, **({"namespace": namespace} if namespace else {})}
    config_map = {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-job", **metadata},
        "data": {JOB_KEY: Path(job_file).read_text()},
    }
    spec = cluster["spec"]
    head = spec["headGroupSpec"]["template"]["spec"]
    head.setdefault("volumes", []).append({"name": "job-file", "configMap": {"name": f"{name}-job"}})
    head["containers"][0].setdefault("volumeMounts", []).append(
        {"name": "job-file", "mountPath": JOBS_MOUNT, "readOnly": True})
    ray_job = {
        "apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": name, **metadata},
        "spec": {
            "entrypoint": shlex.join(["hybridmat", command, f"{JOBS_MOUNT}/{JOB_KEY}"]),
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": TTL_SECONDS,
            "rayClusterSpec": spec,
        },
    }
    return [config_map, ray_job]


class _Dumper(yaml.SafeDumper):
    """Safe YAML with multi-line strings (the job file) as literal blocks, readable in the manifest."""


_Dumper.add_representer(str, lambda dumper, text: dumper.represent_scalar(
    "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))


def dump(manifests: list[dict[str, Any]]) -> str:
    """Manifests as one multi-document YAML text."""
    return yaml.dump_all(manifests, Dumper=_Dumper, sort_keys=False)


def kubectl_apply(manifests: list[dict[str, Any]]) -> str | None:
    """``kubectl apply`` the manifests; ``None`` when ``kubectl`` is not on this machine."""
    if shutil.which("kubectl") is None:
        return None
    result = subprocess.run(["kubectl", "apply", "-f", "-"], input=dump(manifests), capture_output=True,
                            text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"kubectl apply failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout.strip()
