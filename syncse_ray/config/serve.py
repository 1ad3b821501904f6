"""Serving: Ray Serve embeddings + retrieval endpoint (syncse_ray/serve, docs/serve.md)."""

from pathlib import Path

from pydantic import Field, model_validator

from syncse_ray.config.base import PrecisionSetting, Section


class AutoscalingConfig(Section):
    """Embedder replicas between min and max, scaled on ongoing requests (chunks of texts) per replica."""

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    target_ongoing_requests: float = Field(8.0, gt=0.0)

    @model_validator(mode="after")
    def _min_le_max(self):
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) > max_replicas ({self.max_replicas})")
        return self


class RequestLimits(Section):
    """What one request may ask for; anything beyond is a 4xx, never a 5xx."""

    max_inputs_per_request: int = Field(512, gt=0)
    max_input_chars: int = Field(20_000, gt=0)
    max_body_bytes: int = Field(4_000_000, gt=0)
    max_top_k: int = Field(100, gt=0)


class ServeConfig(RequestLimits):
    model: str | None = Field(None, description="default: the best model of the train stage")
    model_name: str | None = Field(None, description="the id clients send as `model`; default: folder name")
    corpus: Path | None = Field(None, description="text/JSONL/Parquet to index for /v1/search")
    corpus_text_field: str = "text"
    corpus_id_field: str = "id"
    index: Path | None = Field(None, description="a saved index (syncse index build)")
    host: str = "127.0.0.1"
    port: int = Field(8000, gt=0, lt=65536)
    num_replicas: int | None = Field(1, ge=1, description="fixed embedder replicas; None: use autoscaling")
    autoscaling: AutoscalingConfig = AutoscalingConfig()
    num_gpus_per_replica: float = Field(0.0, ge=0.0)
    precision: PrecisionSetting = Field("auto", description="the encoder's weights on each replica: auto (bf16 "
                                                             "where the replica's CPU/GPU has it, else fp32 / "
                                                             "fp16), fp32, bf16, fp16")
    num_cpus_per_replica: float | None = Field(
        None, ge=0.0, description="None: 1, or on a local cluster the share that lets every replica fit")
    num_cpus_ingress: float = Field(0.25, ge=0.0, description="the FastAPI ingress (validation, search)")
    max_batch_size: int = Field(64, gt=0, description="texts per model call (the replica's batcher)")
    max_batch_tokens: int | None = Field(
        16_384, gt=0, description="padded tokens (longest × count) per forward pass; None: count only")
    min_batch_fill: float | None = Field(
        0.8, gt=0.0, le=1.0,
        description="least share of real (not padding) tokens in a forward pass: a batch of mixed lengths runs "
                    "as several passes of similar lengths; None: one pass per batch within the limits above")
    batch_wait_timeout_s: float = Field(0.01, ge=0.0)
    replica_retries: int = Field(
        3, ge=0, description="times an embed call is resent when its Embedder replica dies (embedding is idempotent)")
    cluster_autoscales: bool | None = Field(
        None, description="None: ask Ray; true: a request beyond the cluster only warns (nodes can be added)")
    api_key_env: str | None = Field(None, description="env var holding the bearer token; None: no auth")
    access_log: bool = Field(False, description="Serve's access log: a line a request (proxy and replicas), in "
                                                "<run_dir>/logs/serve.log with the rest of Ray's and Serve's output")

    @model_validator(mode="after")
    def _one_search_source(self):
        if self.corpus is not None and self.index is not None:
            raise ValueError("give either corpus (indexed at start) or index (a saved index), not both")
        return self
