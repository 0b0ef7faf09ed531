"""cluster.yaml passes Ray's own checks: the schema shipped in the ray package, then the config
preparation and validation that `ray up` runs before it talks to the cloud provider."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from tests.deploy.conftest import REPO

CONFIG = yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_cluster_yaml_matches_rays_schema() -> None:
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(CONFIG, schema)


def test_cluster_yaml_passes_ray_up_preparation_and_validation() -> None:
    prepared = prepare_config(copy.deepcopy(CONFIG))
    validate_config(prepared)
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] == "head"


def test_head_cpu_and_gpu_worker_types() -> None:
    types = CONFIG["available_node_types"]
    assert set(types) == {"head", "cpu", "gpu"}
    assert types["cpu"]["resources"]["CPU"] > 0 and "GPU" not in types["cpu"]["resources"]
    assert types["gpu"]["resources"]["GPU"] >= 1 and types["gpu"]["node_config"]["InstanceType"].startswith("g")
    assert types["gpu"]["docker"]["worker_image"].endswith("-gpu")


def test_nodes_install_hybridmat_with_the_job_files_and_share_one_token() -> None:
    (remote, local), = CONFIG["file_mounts"].items()
    assert remote == "~/hybridmat" and (REPO / local / "jobs" / "screen.yaml").is_file()
    assert any("pip install" in c and "~/hybridmat" in c for c in CONFIG["setup_commands"])
    assert any("ray get-auth-token --generate > /dev/null" in c for c in CONFIG["head_setup_commands"])
    assert CONFIG["cluster_synced_files"] == ["~/.ray/auth_token"]
    for command in (CONFIG["head_start_ray_commands"][-1], CONFIG["worker_start_ray_commands"][-1]):
        assert "RAY_AUTH_MODE=token ray start" in command
    assert "--dashboard-host=127.0.0.1" in CONFIG["head_start_ray_commands"][-1]
