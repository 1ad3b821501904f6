"""What the Serve app asks the cluster for, whether it fits, and the CPU share that makes it fit on a laptop.

Pure arithmetic (no Ray): `app.start_server` reads the cluster (`ray.available_resources()`, the nodes) into a
`ClusterResources` and asks `fit_to_cluster` (the CPU share when unset, then `check_fit`) before `serve.run`, so a request that can never be scheduled fails at
once with one line saying what is missing and what to set, instead of Serve waiting (and warning every 30 s that
replicas "have taken more than 30s to be scheduled") forever.

    demand = ServeDemand.of(settings, cpus_per_replica=1.0)
    report = check_fit(demand, cluster)          # report.ok, report.message(), report.warnings
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from syncse_ray.config.serve import ServeConfig
from syncse_ray.errors import SyncseError

# Serve's HTTP proxy actors reserve no CPU: in Ray 2.60 they are created with `HTTPOptions.num_cpus`, which must
# be 0 (a non-zero value is refused), and the controller is `num_cpus=0` too. Kept as a term of the sum so the
# message shows every part of the app.
PROXY_CPUS = 0.0
log = logging.getLogger("syncse_ray.serve")  # what `syncse serve` prints (sizing, resource warnings)

DEFAULT_CPUS_PER_REPLICA = 1.0  # serve.num_cpus_per_replica when it is not set and nothing is chosen for it
_EPS = 1e-9  # Ray's resource quantities are multiples of 1e-4; this only absorbs float sums


class ServeResourceError(SyncseError):
    """The cluster cannot hold the app as configured (exit code 2: change the settings)."""


def _floor2(x: float) -> float:
    """Round down to 2 decimals (a share that still fits once Ray sums it)."""
    return math.floor(x * 100 + 1e-6) / 100


def _fmt(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True)
class ServeDemand:
    """The app's resource requests: `replicas` Embedder replicas at start (`max_replicas` at most, when
    autoscaling), each `cpus_per_replica` CPUs and `gpus_per_replica` GPUs, one ingress replica, the proxy."""

    replicas: int
    max_replicas: int
    cpus_per_replica: float
    gpus_per_replica: float
    ingress_cpus: float
    proxy_cpus: float = PROXY_CPUS
    autoscaling: bool = False

    @classmethod
    def of(cls, cfg: ServeConfig, cpus_per_replica: float | None = None) -> ServeDemand:
        """The demand of `cfg`; `cpus_per_replica` replaces `cfg.num_cpus_per_replica` (None there: 1 CPU).
        An autoscaling embedder starts at `min_replicas`, but at least one (the ingress calls it at start)."""
        if cfg.num_replicas is not None:
            replicas = top = cfg.num_replicas
        else:
            replicas, top = max(1, cfg.autoscaling.min_replicas), cfg.autoscaling.max_replicas
        cpus = cpus_per_replica if cpus_per_replica is not None else cfg.num_cpus_per_replica
        return cls(replicas=replicas, max_replicas=max(top, replicas),
                   cpus_per_replica=DEFAULT_CPUS_PER_REPLICA if cpus is None else cpus,
                   gpus_per_replica=cfg.num_gpus_per_replica, ingress_cpus=cfg.num_cpus_ingress,
                   autoscaling=cfg.num_replicas is None)

    def cpus(self, replicas: int | None = None) -> float:
        n = self.replicas if replicas is None else replicas
        return n * self.cpus_per_replica + self.ingress_cpus + self.proxy_cpus

    def gpus(self, replicas: int | None = None) -> float:
        return (self.replicas if replicas is None else replicas) * self.gpus_per_replica

    def describe_cpus(self, replicas: int | None = None) -> str:
        n = self.replicas if replicas is None else replicas
        parts = f"{n} Embedder replica{'s' if n != 1 else ''} × {_fmt(self.cpus_per_replica)} + ingress " \
                f"{_fmt(self.ingress_cpus)}"
        if self.proxy_cpus:
            parts += f" + proxy {_fmt(self.proxy_cpus)}"
        return f"{_fmt(self.cpus(n))} CPU ({parts})"


@dataclass(frozen=True)
class ClusterResources:
    """What the cluster has: `available` now and `total` (both as `ray.available_resources()` /
    `ray.cluster_resources()` give them), the most of each resource any single node has, whether it can add
    nodes, and whether it is the local cluster this process started."""

    available: dict[str, float]
    total: dict[str, float]
    largest_node: dict[str, float] = field(default_factory=dict)
    autoscales: bool = False
    local: bool = False


def auto_cpus_per_replica(cluster_cpus: float, replicas: int, ingress_cpus: float,
                          proxy_cpus: float = PROXY_CPUS, cap: float = DEFAULT_CPUS_PER_REPLICA) -> float | None:
    """The CPU share per Embedder replica that lets `replicas` replicas, the ingress and the proxy fit in
    `cluster_cpus`: at most `cap` (1 CPU, the default), rounded down to 0.01. None when no positive share fits
    (the check then reports what is missing)."""
    share = _floor2(min(cap, (cluster_cpus - ingress_cpus - proxy_cpus) / max(1, replicas)))
    return share if share > 0 else None


@dataclass
class FitReport:
    """`problems`: what cannot be scheduled; `advice`: for each resource short, the settings that would each fix
    it; `warnings`: what may not fit later (autoscaling beyond the cluster). `ok` when there are no problems."""

    problems: list[str] = field(default_factory=list)
    advice: list[list[str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def message(self) -> str:
        text = "the Serve app cannot be scheduled on this cluster: " + "; ".join(self.problems)
        groups = [" or ".join(dict.fromkeys(group)) for group in self.advice if group]
        if groups:
            text += "; use " + ", and ".join(groups)
        return text


def _fits(need: float, have: float) -> bool:
    return need <= have + _EPS


def _replicas(n: int) -> str:
    return f"{n} Embedder replica{'s' if n != 1 else ''}"


def check_fit(demand: ServeDemand, cluster: ClusterResources) -> FitReport:
    """Whether `demand` can be scheduled on `cluster` now. Compares the sums with what is available, and one
    replica with the largest node (a replica cannot span nodes). An autoscaling embedder's `max_replicas` beyond
    the cluster's total is only a warning: those replicas wait, the app still starts."""
    report = FitReport()
    replica_flag = "--min-replicas" if demand.autoscaling else "--replicas"
    cpu_have, cpu_total = cluster.available.get("CPU", 0.0), cluster.total.get("CPU", 0.0)
    gpu_have, gpu_total = cluster.available.get("GPU", 0.0), cluster.total.get("GPU", 0.0)
    largest_cpu = cluster.largest_node.get("CPU")
    largest_gpu = cluster.largest_node.get("GPU", 0.0) if cluster.largest_node else None

    # GPUs first: on a machine without GPUs, no CPU share fixes a GPU request.
    if demand.gpus_per_replica > 0:
        advice: list[str] = []
        if not _fits(demand.gpus(), gpu_have):
            report.problems.append(f"it needs {_fmt(demand.gpus())} GPU ({_replicas(demand.replicas)} × "
                                   f"{_fmt(demand.gpus_per_replica)}) but {_fmt(gpu_have)} of {_fmt(gpu_total)} "
                                   f"GPU are available")
            fit = math.floor(gpu_have / demand.gpus_per_replica + _EPS)
            if fit >= 1:
                advice.append(f"{replica_flag} {fit}")
            share = _floor2(gpu_have / demand.replicas)
            if 0 < share and (largest_gpu is None or _fits(share, largest_gpu)):
                advice.append(f"--num-gpus {_fmt(share)}")
        elif largest_gpu is not None and not _fits(demand.gpus_per_replica, largest_gpu):
            report.problems.append(f"one Embedder replica needs {_fmt(demand.gpus_per_replica)} GPU but the "
                                   f"largest node has {_fmt(largest_gpu)}")
            if largest_gpu > 0:
                advice.append(f"--num-gpus {_fmt(largest_gpu)}")
        if report.problems:
            advice.append("--num-gpus 0 (serve.num_gpus_per_replica: run on CPU)")
            report.advice.append(advice)

    cpu_problems = len(report.problems)
    room = cpu_have - demand.ingress_cpus - demand.proxy_cpus
    share = _floor2(room / demand.replicas)
    if not _fits(demand.cpus(), cpu_have):
        report.problems.append(f"it needs {demand.describe_cpus()} but {_fmt(cpu_have)} of {_fmt(cpu_total)} "
                               f"CPU are available")
    if largest_cpu is not None and not _fits(demand.cpus_per_replica, largest_cpu):
        report.problems.append(f"one Embedder replica needs {_fmt(demand.cpus_per_replica)} CPU but the largest "
                               f"node has {_fmt(largest_cpu)}")
        share = min(share, _floor2(largest_cpu))
    if len(report.problems) > cpu_problems:
        advice = []
        if share > 0:
            advice.append(f"--set serve.num_cpus_per_replica={_fmt(share)}")
        if demand.cpus_per_replica > 0:
            fit = math.floor(room / demand.cpus_per_replica + _EPS)
            if 1 <= fit < demand.replicas:
                advice.append(f"{replica_flag} {fit}")
        if room <= 0 and cpu_have > demand.proxy_cpus:
            advice.append(f"--set serve.num_cpus_ingress={_fmt(_floor2((cpu_have - demand.proxy_cpus) / 2))}")
        report.advice.append(advice)

    if report.ok and demand.max_replicas > demand.replicas:
        top = demand.max_replicas
        short = [] if _fits(demand.cpus(top), cpu_total) else [demand.describe_cpus(top)]
        if demand.gpus_per_replica > 0 and not _fits(demand.gpus(top), gpu_total):
            short.append(f"{_fmt(demand.gpus(top))} GPU")
        if short:
            report.warnings.append(
                f"autoscaling up to {top} Embedder replicas needs {' and '.join(short)}, more than this cluster's "
                f"{_fmt(cpu_total)} CPU / {_fmt(gpu_total)} GPU: replicas beyond what fits wait for resources")
    return report


def fit_to_cluster(settings: ServeConfig, cluster: ClusterResources) -> ServeConfig:
    """`settings` with a CPU share per Embedder replica chosen when it is unset (on the local cluster: what
    lets every replica and the ingress fit, at most 1; elsewhere 1), checked against `cluster`. Raises
    `ServeResourceError` (one line, what is missing and what to set) when the app cannot be scheduled, unless
    the cluster autoscales: then it only warns."""
    cpus = settings.num_cpus_per_replica
    if cpus is None:
        cpus = DEFAULT_CPUS_PER_REPLICA
        if cluster.local:
            demand = ServeDemand.of(settings)
            chosen = auto_cpus_per_replica(cluster.available.get("CPU", 0.0), demand.max_replicas,
                                           demand.ingress_cpus)
            if chosen is not None:
                cpus = chosen
                log.info(f"serve.num_cpus_per_replica not set: {cpus:g} CPU per Embedder replica, so "
                         f"{ServeDemand.of(settings, cpus).describe_cpus(demand.max_replicas)} fit the "
                         f"{cluster.available.get('CPU', 0.0):g} CPU of this local cluster")
        settings = settings.model_copy(update={"num_cpus_per_replica": cpus})
    report = check_fit(ServeDemand.of(settings), cluster)
    for warning in report.warnings:
        log.warning(warning)
    if not report.ok:
        if cluster.autoscales:
            log.warning(report.message() + " (the cluster autoscales: deploying anyway, replicas wait for nodes)")
        else:
            hint = "" if cluster.local else \
                " (a cluster that adds nodes on demand: --set serve.cluster_autoscales=true only warns)"
            raise ServeResourceError(report.message() + hint)
    return settings
