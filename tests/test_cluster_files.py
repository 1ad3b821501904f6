"""Cluster files are checked the way their consumers check them: launcher YAMLs with Ray's own validation,
KubeRay manifests for the fields the operator requires."""

import shlex
from pathlib import Path

import pytest
import ray
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"


def _ray_schema() -> dict:
    """The cluster-YAML JSON schema Ray ships with the autoscaler (what `ray up` validates against)."""
    import json

    return json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())


@pytest.mark.parametrize("name", ["aws.yaml", "gcp.yaml"])
def test_launcher_yaml_passes_ray_validation(name):
    import jsonschema

    config = yaml.safe_load((CLUSTER / name).read_text())
    jsonschema.validate(config, _ray_schema())
    # Autoscaling GPU groups from zero, a CPU-only head, an idle timeout, the project installed on nodes.
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"].get("CPU") == 0
    workers = [t for n, t in config["available_node_types"].items() if n != config["head_node_type"]]
    assert workers and all(t["min_workers"] == 0 and t["max_workers"] > 0 for t in workers)
    assert config["idle_timeout_minutes"] > 0
    assert config["docker"]["image"] == f"rayproject/ray:{ray.__version__}-py311-gpu"
    assert any("syncse-ray[gpu]" in c for c in config["setup_commands"])


def test_launcher_validation_catches_a_broken_file():
    import jsonschema

    config = yaml.safe_load((CLUSTER / "aws.yaml").read_text())
    config["available_node_types"]["head"]["node_confg"] = config["available_node_types"]["head"].pop("node_config")
    with pytest.raises(jsonschema.ValidationError, match="node_confg|node_config"):
        jsonschema.validate(config, _ray_schema())


def _containers(pod_template):
    containers = pod_template["spec"]["containers"]
    assert containers, "pod template without containers"
    for c in containers:
        assert c.get("name") and c.get("image"), c
    return containers


def _check_cluster_spec(spec):
    assert spec["rayVersion"] == ray.__version__
    assert spec.get("enableInTreeAutoscaling") is True
    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    _containers(head["template"])
    groups = spec["workerGroupSpecs"]
    assert groups
    for g in groups:
        assert g["groupName"] and isinstance(g["rayStartParams"], dict)
        assert 0 == g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
        for c in _containers(g["template"]):
            limits = c["resources"]["limits"]
            assert int(limits["nvidia.com/gpu"]) >= 1


def _load(name):
    doc = yaml.safe_load((CLUSTER / "k8s" / name).read_text())
    assert doc["apiVersion"] == "ray.io/v1"
    assert doc["metadata"]["name"]
    return doc


def test_raycluster_manifest():
    doc = _load("raycluster.yaml")
    assert doc["kind"] == "RayCluster"
    _check_cluster_spec(doc["spec"])


def test_rayjob_manifest_runs_the_pipeline_entrypoint():
    doc = _load("rayjob.yaml")
    assert doc["kind"] == "RayJob"
    spec = doc["spec"]
    _check_cluster_spec(spec["rayClusterSpec"])
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["python", "jobs/pipeline.py"]
    assert (REPO / argv[1]).is_file()
    config = argv[argv.index("--config") + 1]
    assert (REPO / config).is_file()
    yaml.safe_load(spec["runtimeEnvYAML"])


def test_rayservice_manifest_holds_a_valid_serve_config():
    from ray.serve.schema import ServeDeploySchema

    doc = _load("rayservice.yaml")
    assert doc["kind"] == "RayService"
    _check_cluster_spec(doc["spec"]["rayClusterConfig"])
    ServeDeploySchema.model_validate(yaml.safe_load(doc["spec"]["serveConfigV2"]))


def test_dockerfile_builds_on_the_current_ray_image():
    first = (CLUSTER / "Dockerfile").read_text().splitlines()
    base = next(line for line in first if line.startswith("FROM "))
    assert base == f"FROM rayproject/ray:{ray.__version__}-py311-gpu"


def test_serve_llm_writer_builds_the_llm_config_ray_validates():
    """cluster/serve_llm_writer.py's arguments become an `LLMConfig` (Ray's own pydantic model): on CPU the engine
    set-up synthesis gives an in-process engine, on a GPU the accelerator; a wrong argument is refused by name."""
    import sys

    from ray.serve.llm import LLMConfig

    sys.path.insert(0, str(CLUSTER))
    try:
        from serve_llm_writer import llm_config_args
    finally:
        sys.path.remove(str(CLUSTER))
    cpu = LLMConfig(**llm_config_args({"model": "/models/smollm2"}))
    assert cpu.model_loading_config.model_id == "writer" and cpu.accelerator_type is None
    assert cpu.accelerator_config.kind == "cpu"
    assert cpu.engine_kwargs["enforce_eager"] is True and cpu.engine_kwargs["enable_chunked_prefill"] is False
    assert "model" not in cpu.engine_kwargs and "tensor_parallel_size" not in cpu.engine_kwargs
    gpu = LLMConfig(**llm_config_args({"model": "Qwen/Qwen2.5-7B-Instruct", "accelerator": "A10G", "replicas": "2",
                                       "model_id": "qwen"}))
    assert gpu.accelerator_type == "A10G" and gpu.deployment_config["num_replicas"] == 2
    assert "kv_cache_memory_bytes" not in gpu.engine_kwargs
    with pytest.raises(ValueError, match="replica"):
        llm_config_args({"model": "m", "replica": "2"})
