"""The Serve config file and the app builders: parsed by Ray's own schema, built into an Application (no cluster)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from syncse_ray.config import ConfigError, ServeConfig, load_config

REPO = Path(__file__).resolve().parents[1]


def _deployments(app) -> dict[str, object]:
    """Deployment name -> Deployment, as Serve itself builds the application before deploying it. (Ray has no
    public call that lists an Application's deployments without a running cluster; `serve build` cannot pass
    builder arguments.)"""
    from ray.serve._private.build_app import build_app as serve_build_app

    return {d.name: d for d in serve_build_app(app, name="syncse").deployments}


def test_serve_config_yaml_is_a_valid_serve_deploy_config():
    from ray.serve.schema import ServeDeploySchema

    from syncse_ray.serve.app import app_builder

    raw = yaml.safe_load((REPO / "cluster" / "serve_config.yaml").read_text())
    schema = ServeDeploySchema.model_validate(raw)
    (application,) = schema.applications
    assert application.import_path == "syncse_ray.serve.app:app_builder"
    ServeConfig.model_validate(application.args)  # every arg is a ServeConfig field
    embedder = _deployments(app_builder(application.args))["Embedder"]
    assert embedder._deployment_config.autoscaling_config.max_replicas == 4


def test_app_builder_takes_serve_cli_strings():
    from syncse_ray.serve.app import app_builder

    app = app_builder({"model": "bundled:all-minilm-l6-v2", "num_replicas": "3", "max_batch_size": "32",
                       "num_cpus_per_replica": "2"})
    embedder = _deployments(app)["Embedder"]
    assert embedder.num_replicas == 3 and embedder.ray_actor_options["num_cpus"] == 2
    auto = _deployments(app_builder({"model": "m", "num_replicas": "null", "autoscaling.max_replicas": "5"}))
    assert auto["Embedder"]._deployment_config.autoscaling_config.max_replicas == 5


def test_build_app_settings_reach_the_deployments():
    from syncse_ray.serve.app import build_app

    cfg = load_config(None, ["serve.model=bundled:all-minilm-l6-v2", "serve.num_gpus_per_replica=1"]).serve
    deployments = _deployments(build_app(cfg, max_batch_size=8))
    assert set(deployments) == {"Embedder", "EmbeddingsAPI"}
    assert deployments["Embedder"].ray_actor_options["num_gpus"] == 1
    assert deployments["Embedder"].max_ongoing_requests == 16


def test_build_app_refuses_bad_settings(monkeypatch):
    from syncse_ray.serve.app import build_app

    with pytest.raises(ConfigError, match="serve.model is not set"):
        build_app()
    monkeypatch.delenv("SYNCSE_NO_SUCH_KEY", raising=False)
    with pytest.raises(ConfigError, match="SYNCSE_NO_SUCH_KEY"):  # auth asked for, no key: never serve open
        build_app(model="m", api_key_env="SYNCSE_NO_SUCH_KEY")
    with pytest.raises(ValueError, match="either corpus"):
        build_app(model="m", corpus="c.txt", index="idx")
    with pytest.raises(ValueError, match="min_replicas"):
        build_app(model="m", autoscaling={"min_replicas": 3, "max_replicas": 2})


def test_batch_limits_and_cpu_share_reach_the_embedder():
    from syncse_ray.serve.app import build_app

    embedder = _deployments(build_app(model="m", max_batch_tokens=500, max_batch_size=8))["Embedder"]
    kwargs = embedder._replica_config.init_kwargs
    assert (kwargs["max_batch_tokens"], kwargs["max_batch_size"]) == (500, 8)
    assert embedder.ray_actor_options["num_cpus"] == 1  # serve.num_cpus_per_replica unset: 1 CPU
    assert _deployments(build_app(model="m", max_batch_tokens=None))["Embedder"]._replica_config.init_kwargs[
        "max_batch_tokens"] is None  # count only
