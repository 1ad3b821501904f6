"""What the Serve app asks for, whether it fits, the CPU share chosen on a laptop (pure, no Ray), and the refusal
through `syncse serve`: one line, exit 2, before anything is deployed."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from syncse_ray.cli import app
from syncse_ray.config import ServeConfig
from syncse_ray.serve.resources import (
    ClusterResources,
    ServeDemand,
    ServeResourceError,
    auto_cpus_per_replica,
    check_fit,
)


def _cluster(cpus: float, gpus: float = 0.0, *, nodes: list[float] | None = None, autoscales: bool = False,
             local: bool = True) -> ClusterResources:
    resources = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}
    largest = {"CPU": max(nodes) if nodes else cpus, "GPU": gpus}
    return ClusterResources(available=resources, total=resources, largest_node=largest, autoscales=autoscales,
                            local=local)


def _demand(**settings) -> ServeDemand:
    cpus = settings.pop("cpus", None)
    return ServeDemand.of(ServeConfig(model="m", **settings), cpus)


def test_demand_sums_replicas_ingress_and_proxy():
    demand = _demand(num_replicas=2, num_cpus_per_replica=1.0, num_cpus_ingress=0.25)
    assert (demand.replicas, demand.max_replicas, demand.cpus(), demand.gpus()) == (2, 2, 2.25, 0.0)
    assert demand.describe_cpus() == "2.25 CPU (2 Embedder replicas × 1 + ingress 0.25)"
    assert _demand(num_replicas=1).cpus_per_replica == 1.0  # unset: 1 CPU unless something chooses a share
    assert _demand(num_replicas=1, cpus=0.5).cpus() == 0.75
    auto = _demand(num_replicas=None, autoscaling={"min_replicas": 0, "max_replicas": 4})
    assert (auto.replicas, auto.max_replicas, auto.autoscaling) == (1, 4, True)  # the ingress calls one at start


def test_the_reported_case_two_replicas_on_two_cores_is_refused_with_what_to_set():
    report = check_fit(_demand(num_replicas=2, num_cpus_per_replica=1.0), _cluster(2))
    assert not report.ok
    message = report.message()
    assert "\n" not in message
    assert "2.25 CPU (2 Embedder replicas × 1 + ingress 0.25) but 2 of 2 CPU are available" in message
    assert "--set serve.num_cpus_per_replica=0.87" in message and "--replicas 1" in message
    assert check_fit(_demand(num_replicas=2, num_cpus_per_replica=0.87), _cluster(2)).ok  # the advice fits


def test_gpus_missing_on_a_cpu_machine():
    report = check_fit(_demand(num_replicas=1, num_gpus_per_replica=1), _cluster(8))
    assert not report.ok
    assert "it needs 1 GPU (1 Embedder replica × 1) but 0 of 0 GPU are available" in report.message()
    assert "--num-gpus 0" in report.message()
    two = check_fit(_demand(num_replicas=3, num_gpus_per_replica=1), _cluster(8, gpus=2))
    assert "--replicas 2" in two.message() and "--num-gpus 0.66" in two.message()
    assert check_fit(_demand(num_replicas=2, num_gpus_per_replica=1), _cluster(8, gpus=2)).ok


def test_a_replica_larger_than_any_node():
    report = check_fit(_demand(num_replicas=1, num_cpus_per_replica=4), _cluster(8, nodes=[2, 2, 2, 2]))
    assert not report.ok and "one Embedder replica needs 4 CPU but the largest node has 2" in report.message()
    assert "--set serve.num_cpus_per_replica=2" in report.message()


def test_nothing_left_for_the_ingress():
    report = check_fit(_demand(num_replicas=1, num_cpus_per_replica=0.5, num_cpus_ingress=1), _cluster(1))
    assert "--set serve.num_cpus_ingress=0.5" in report.message()


def test_autoscaling_beyond_the_cluster_only_warns():
    demand = _demand(num_replicas=None, num_cpus_per_replica=1,
                     autoscaling={"min_replicas": 1, "max_replicas": 8})
    report = check_fit(demand, _cluster(4))
    assert report.ok and len(report.warnings) == 1 and "up to 8 Embedder replicas" in report.warnings[0]
    start = check_fit(_demand(num_replicas=None, num_cpus_per_replica=1,
                              autoscaling={"min_replicas": 6, "max_replicas": 8}), _cluster(4))
    assert not start.ok and "--min-replicas 3" in start.message()


def test_auto_share_fits_every_replica_and_the_ingress():
    assert auto_cpus_per_replica(2, 2, 0.25) == 0.87
    assert auto_cpus_per_replica(2, 1, 0.25) == 1.0  # never above 1 CPU
    assert auto_cpus_per_replica(16, 4, 0.25) == 1.0
    assert auto_cpus_per_replica(2, 3, 0.25) == 0.58
    assert auto_cpus_per_replica(0.25, 1, 0.25) is None  # nothing fits: the check says what is missing
    for cpus in (1, 2, 3, 4, 6, 8):
        for replicas in (1, 2, 3, 5, 7):
            share = auto_cpus_per_replica(cpus, replicas, 0.25)
            demand = _demand(num_replicas=replicas, cpus=share)
            assert check_fit(demand, _cluster(cpus)).ok, (cpus, replicas, share)


def _fit(settings: ServeConfig, cluster: ClusterResources) -> ServeConfig:
    from syncse_ray.serve.resources import fit_to_cluster

    return fit_to_cluster(settings, cluster)


def test_fit_to_cluster_sizes_unset_cpus_on_a_local_cluster_only(caplog):
    caplog.set_level("INFO", logger="syncse_ray.serve")
    sized = _fit(ServeConfig(model="m", num_replicas=2), _cluster(2, local=True))
    assert sized.num_cpus_per_replica == 0.87
    assert "0.87 CPU per Embedder replica" in caplog.text and "local cluster" in caplog.text
    joined = _fit(ServeConfig(model="m", num_replicas=2), _cluster(4, local=False))
    assert joined.num_cpus_per_replica == 1.0
    explicit = ServeConfig(model="m", num_replicas=2, num_cpus_per_replica=1.0)
    with pytest.raises(ServeResourceError, match="num_cpus_per_replica=0.87"):  # an explicit value is kept
        _fit(explicit, _cluster(2, local=True))
    with pytest.raises(ServeResourceError, match="cluster_autoscales=true"):  # joined: say how to only warn
        _fit(explicit, _cluster(2, local=False))
    caplog.clear()
    assert _fit(explicit, _cluster(2, autoscales=True, local=False)).num_cpus_per_replica == 1.0
    assert "deploying anyway" in caplog.text


def test_serve_refuses_an_impossible_request_in_one_line(monkeypatch):
    """The CLI path with the cluster read replaced (no Ray): a GPU asked of a GPU-less cluster."""
    import syncse_ray.serve.app as serve_app
    from syncse_ray.runtime import ray_env

    monkeypatch.setattr(ray_env, "init_ray", lambda cfg=None: None)
    monkeypatch.setattr(serve_app, "read_cluster", lambda settings: _cluster(2, local=False))
    monkeypatch.setattr(serve_app.serve, "run", lambda *a, **k: pytest.fail("deployed anyway"))
    monkeypatch.setattr(serve_app.serve, "start", lambda *a, **k: pytest.fail("started Serve anyway"))
    result = CliRunner().invoke(app, ["serve", "bundled:all-minilm-l6-v2", "--set", "serve.num_gpus_per_replica=1"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the Serve app cannot be scheduled"), result.output
    assert "GPU" in lines[0] and "--num-gpus 0" in lines[0]


@pytest.mark.slow
@pytest.mark.timeout(600)  # a refusal that never comes (a deployment waiting for its resources) hangs: fail it
def test_serve_refuses_an_impossible_request_on_real_ray(ray_local):
    """Real Ray (the session's local cluster): more CPUs or GPUs per replica than the cluster has. Refused in
    one line, exit 2, before anything is started: no Serve controller, proxy or replica actor appears."""
    import ray

    def named_actors() -> set[tuple[str, str]]:  # Serve names every actor it starts
        return {(a["namespace"], a["name"]) for a in ray.util.list_named_actors(all_namespaces=True)}

    runner = CliRunner()
    for option in ("serve.num_cpus_per_replica=1000", "serve.num_gpus_per_replica=1000"):
        before = named_actors()
        result = runner.invoke(app, ["serve", "bundled:all-minilm-l6-v2", "--set", option])
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: the Serve app cannot be scheduled"), result.output
        assert named_actors() == before, "the refusal started something on the cluster"


def test_each_short_resource_gets_its_own_advice():
    cluster = ClusterResources(available={"CPU": 8, "GPU": 2}, total={"CPU": 8, "GPU": 2},
                               largest_node={"CPU": 2, "GPU": 1})
    message = check_fit(_demand(num_replicas=1, num_cpus_per_replica=4, num_gpus_per_replica=2), cluster).message()
    assert "one Embedder replica needs 2 GPU but the largest node has 1" in message
    assert "one Embedder replica needs 4 CPU but the largest node has 2" in message
    assert message.endswith("use --num-gpus 1 or --num-gpus 0 (serve.num_gpus_per_replica: run on CPU), "
                            "and --set serve.num_cpus_per_replica=2")
