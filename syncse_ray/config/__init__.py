"""Typed configuration: one YAML file, one pydantic model per stage, `--set a.b=value` overrides.

    cfg = load_config("configs/quickstart.yaml", ["train.lr=1e-5"])

Every section forbids unknown keys, so a typo fails at load time with the key's dotted path.
"""

from syncse_ray.config.loader import ConfigError, apply_overrides, dump_config, load_config
from syncse_ray.config.root import (
    Config,
    EvalConfig,
    RayConfig,
    ServeConfig,
    SynthConfig,
    TrainConfig,
)

__all__ = [
    "Config",
    "ConfigError",
    "EvalConfig",
    "RayConfig",
    "ServeConfig",
    "SynthConfig",
    "TrainConfig",
    "apply_overrides",
    "dump_config",
    "load_config",
]
