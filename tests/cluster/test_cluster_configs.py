"""The cluster configs users deploy: the autoscaler YAML against the schema that ships in the
installed ray, and the KubeRay manifests' required fields."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import validate_config

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"


def test_autoscaler_config_validates_against_rays_schema():
    cfg = yaml.safe_load((CLUSTER / "aws-gpu.yaml").read_text())
    validate_config(cfg)  # ray/autoscaler/ray-schema.json
    gpu = cfg["available_node_types"]["gpu_worker"]
    assert gpu["resources"]["GPU"] >= 1 and gpu["max_workers"] >= gpu["min_workers"]
    assert cfg["available_node_types"][cfg["head_node_type"]]["resources"]["CPU"] == 0
    assert any("constraints.txt" in c for c in cfg["setup_commands"])
    assert any("prefect worker start" in c for c in cfg["head_start_ray_commands"])
    broken = copy.deepcopy(cfg)
    broken["available_node_types"]["gpu_worker"]["min_wokers"] = 1  # a typo the schema rejects
    with pytest.raises(Exception, match="min_wokers"):
        validate_config(broken)


def _gpu_group(spec: dict) -> dict:
    groups = [g for g in spec["workerGroupSpecs"]
              if any(c["resources"]["limits"].get("nvidia.com/gpu")
                     for c in g["template"]["spec"]["containers"])]
    assert groups, "no GPU worker group"
    return groups[0]


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_kuberay_manifests_hold_what_the_operator_needs(name):
    doc = yaml.safe_load((CLUSTER / "k8s" / name).read_text())
    assert doc["apiVersion"] == "ray.io/v1" and doc["metadata"]["name"]
    spec = doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]
    assert doc["kind"] in {"RayCluster", "RayJob"}
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    group = _gpu_group(spec)
    assert head["image"] and group["template"]["spec"]["containers"][0]["image"] == head["image"]
    assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    import ray
    assert spec["rayVersion"] == ray.__version__  # the image's Ray must match the driver's
    if doc["kind"] == "RayJob":
        assert doc["spec"]["entrypoint"].split()[:2] == ["imgclf", "pipeline"]
        assert "s3://" in doc["spec"]["entrypoint"]
