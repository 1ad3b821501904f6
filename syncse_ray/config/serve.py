"""Serving: Ray Serve embeddings + retrieval endpoint."""

from pathlib import Path

from pydantic import Field

from syncse_ray.config.base import Section


class AutoscalingConfig(Section):
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    target_ongoing_requests: float = Field(8.0, gt=0.0)


class ServeConfig(Section):
    model: str | None = Field(None, description="default: the best model of the train stage")
    corpus: Path | None = Field(None, description="text/JSONL/Parquet to index for /v1/search")
    index: Path | None = Field(None, description="a saved index (syncse index build)")
    host: str = "127.0.0.1"
    port: int = Field(8000, gt=0, lt=65536)
    num_replicas: int | None = Field(1, ge=1, description="fixed replicas; None: use autoscaling")
    autoscaling: AutoscalingConfig = AutoscalingConfig()
    num_gpus_per_replica: float = Field(0.0, ge=0.0)
    num_cpus_per_replica: float = Field(1.0, ge=0.0)
    max_batch_size: int = Field(64, gt=0)
    batch_wait_timeout_s: float = Field(0.01, ge=0.0)
    max_inputs_per_request: int = Field(512, gt=0)
    max_input_chars: int = Field(20_000, gt=0)
    max_body_bytes: int = Field(4_000_000, gt=0)
    api_key_env: str | None = Field(None, description="env var holding the bearer token; None: no auth")
