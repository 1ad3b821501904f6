"""How to reach (or start) the Ray cluster."""

from typing import Any

from syncse_ray.config.base import Section


class RayConfig(Section):
    # None: join the cluster in RAY_ADDRESS if set (what `ray job submit` gives a job), else start a local one.
    address: str | None = None
    # Logical CPUs for a local cluster. Stages whose actors each reserve a CPU can starve one another on a
    # 2-core laptop, so a local cluster may advertise more logical CPUs than the machine has.
    num_cpus: int | None = None
    num_gpus: int | None = None
    runtime_env: dict[str, Any] | None = None
    log_to_driver: bool = True
