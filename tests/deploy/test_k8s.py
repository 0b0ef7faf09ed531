"""KubeRay manifests, validated against the RayJob / RayCluster CRD schemas in ../shared/schemas/kuberay.

The CRDs' OpenAPI schemas are read from there and made strict (unknown fields are errors, as with
``kubectl apply --validate=strict``), so a misspelt field fails here rather than being pruned silently.
"""

from __future__ import annotations

import copy
import functools
import gzip
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from hybridmat.config import load_job
from hybridmat.deploy.k8s import TEMPLATE, dump, render_rayjob
from tests.deploy.conftest import REPO, invoke, small_job

SCHEMAS = REPO.parent / "shared" / "schemas" / "kuberay"
DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def crd_validator(kind: str) -> jsonschema.Draft7Validator:
    """A strict validator for the ``ray.io/v1`` schema of ``kind`` (``rayjobs`` or ``rayclusters``)."""
    path = SCHEMAS / f"ray.io_{kind}.yaml.gz"
    if not path.exists():
        pytest.skip(f"KubeRay CRD schemas not found at {SCHEMAS}")
    return _validator(path)


@functools.cache
def _validator(path: Path) -> jsonschema.Draft7Validator:
    crd = yaml.load(gzip.decompress(path.read_bytes()), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return jsonschema.Draft7Validator(strict(version["schema"]["openAPIV3Schema"]))


def strict(schema: Any) -> Any:
    """``schema`` with ``additionalProperties: false`` on every object that lists its properties."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: strict(value) for key, value in schema.items()}
    if "properties" in result and "additionalProperties" not in result \
            and not result.get("x-kubernetes-preserve-unknown-fields"):
        result["additionalProperties"] = False
    return result


def errors(validator: jsonschema.Draft7Validator, manifest: dict) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(manifest)]


def test_raycluster_matches_the_crd() -> None:
    cluster = yaml.safe_load(TEMPLATE.read_text())
    assert cluster["apiVersion"] == "ray.io/v1" and cluster["kind"] == "RayCluster"
    assert errors(crd_validator("rayclusters"), cluster) == []


def test_rayjob_matches_the_crd_with_cpu_and_gpu_groups() -> None:
    job_file = REPO / "jobs" / "screen.yaml"
    config_map, ray_job = render_rayjob(load_job(job_file), job_file, "screen")
    assert errors(crd_validator("rayjobs"), ray_job) == []
    spec = ray_job["spec"]
    assert spec["entrypoint"] == "hybridmat screen /hybridmat/jobs/job.yaml"
    assert spec["shutdownAfterJobFinishes"] is True and spec["rayClusterSpec"]["authOptions"] == {"mode": "token"}
    groups = {g["groupName"]: g["template"]["spec"]["containers"][0]["resources"]
              for g in spec["rayClusterSpec"]["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    assert groups["gpu"]["limits"]["nvidia.com/gpu"] == "1" and "nvidia.com/gpu" not in groups["cpu"]["limits"]
    head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    assert {"name": "job-file", "configMap": {"name": config_map["metadata"]["name"]}} in head["volumes"]
    assert ({"name": "job-file", "mountPath": "/hybridmat/jobs", "readOnly": True}
            in head["containers"][0]["volumeMounts"])
    assert config_map["data"]["job.yaml"] == job_file.read_text()
    # ../runs/screen from /hybridmat/jobs lands on the volume mounted at /hybridmat/runs.
    assert {"name": "runs", "mountPath": "/hybridmat/runs"} in head["containers"][0]["volumeMounts"]


def test_committed_rayjob_is_the_rendering_of_the_demo_job() -> None:
    job_file = REPO / "jobs" / "screen.yaml"
    committed = list(yaml.safe_load_all((REPO / "jobs" / "k8s" / "rayjob.yaml").read_text()))
    assert committed == render_rayjob(load_job(job_file), job_file, "screen")


def test_strict_validation_catches_a_misspelt_field() -> None:
    cluster = copy.deepcopy(yaml.safe_load(TEMPLATE.read_text()))
    cluster["spec"]["workerGroupSpecs"][0]["replica"] = cluster["spec"]["workerGroupSpecs"][0].pop("replicas")
    assert any("'replica' was unexpected" in message for message in errors(crd_validator("rayclusters"), cluster))


def test_names_and_entrypoint_are_safe_for_any_job_name(tmp_path: Path) -> None:
    job_file = small_job(tmp_path)
    job = load_job(job_file).model_copy(update={"name": "Screen $(reboot); `id`"})
    config_map, ray_job = render_rayjob(job, job_file, "screen", namespace="materials")
    for manifest in (config_map, ray_job):
        assert DNS_1123.match(manifest["metadata"]["name"]) and manifest["metadata"]["namespace"] == "materials"
    assert shlex.split(ray_job["spec"]["entrypoint"]) == ["hybridmat", "screen", "/hybridmat/jobs/job.yaml"]
    assert errors(crd_validator("rayjobs"), ray_job) == []


def test_k8s_target_applies_with_kubectl_or_prints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job_file = small_job(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no kubectl
    printed = invoke("submit", str(job_file), "--to", "k8s")
    assert printed.exit_code == 0, printed.output
    assert "kubectl is not on this machine" in printed.stderr
    assert [doc["kind"] for doc in yaml.safe_load_all(printed.stdout)] == ["ConfigMap", "RayJob"]
    kubectl = tmp_path / "bin" / "kubectl"
    kubectl.parent.mkdir()
    kubectl.write_text(f"#!/bin/sh\n/bin/cat > {tmp_path}/applied.yaml\n"
                       "echo 'rayjob.ray.io/hybridmat-screen-small created'\n")
    kubectl.chmod(0o755)
    applied = invoke("submit", str(job_file), "--to", "k8s")
    assert applied.exit_code == 0 and "rayjob.ray.io/hybridmat-screen-small created" in applied.stdout
    manifests = render_rayjob(load_job(job_file), job_file, "screen")
    assert (tmp_path / "applied.yaml").read_text() == dump(manifests)
