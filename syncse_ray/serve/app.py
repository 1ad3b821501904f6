"""The Ray Serve application: an `Embedder` deployment (the model; calls merged by `continuous_batching`'s
`ContinuousBatcher`, not `@serve.batch`) behind a FastAPI ingress.

    from ray import serve
    from syncse_ray.serve.app import build_app

    serve.start(http_options={"host": "127.0.0.1", "port": 8000})
    serve.run(build_app(model="bundled:all-minilm-l6-v2", corpus="corpus.jsonl"), name="syncse")
    ...
    serve.shutdown()

or `start_server(settings)` / `stop_server()`, or `serve_forever(settings)` (what `syncse serve` runs);
or, from a Serve config file / the Serve CLI (`cluster/serve_config.yaml`):

    serve run syncse_ray.serve.app:app_builder model=bundled:all-minilm-l6-v2 num_replicas=2

Routes: POST /v1/embeddings, POST /v1/search, GET /v1/models, GET /healthz (see docs/serve.md).
All request logic lives in the Ray-free modules (`http`: the FastAPI app, `protocol`, `responses`, `index`);
this module runs it on Serve.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from syncse_ray.config import ConfigError, RayConfig, ServeConfig
from syncse_ray.config.loader import apply_overrides
from syncse_ray.config.serve import RequestLimits
from syncse_ray.models.references import BUNDLED_PREFIX
from syncse_ray.runtime.interrupts import stop_on_signals
from syncse_ray.serve.continuous_batching import ContinuousBatcher
from syncse_ray.serve.http import ApiBackend, create_api
from syncse_ray.serve.index import VectorIndex, read_corpus
from syncse_ray.serve.resources import DEFAULT_CPUS_PER_REPLICA, ClusterResources, fit_to_cluster
from syncse_ray.serve.retry import call_with_retries
from syncse_ray.serve.tokens import TokenCounts

logger = logging.getLogger("ray.serve")
log = logging.getLogger("syncse_ray.serve")  # what `syncse serve` prints (sizing, resource warnings)

EMBEDDER_NAME = "Embedder"
INGRESS_NAME = "EmbeddingsAPI"
CORPUS_CHUNKS_IN_FLIGHT = 16  # embedder calls at once while indexing a corpus at start
RETRY_BACKOFF_S = 0.25  # first wait before resending a call whose replica died (doubles each time)


@serve.deployment(name=EMBEDDER_NAME)
class Embedder:
    """One copy of the model per replica. Calls carry chunks of at most `max_batch_size` texts; a
    `ContinuousBatcher` merges the chunks queued when the model is free into one model call of at most
    `max_batch_size` texts, which runs as forward passes of at most `max_batch_tokens` padded tokens and at least
    `min_batch_fill` real tokens each (`syncse_ray.models.batching.plan_batches`)."""

    def __init__(self, model: str, *, device: str, max_batch_size: int, batch_wait_timeout_s: float,
                 torch_threads: int | None, max_batch_tokens: int | None = None,
                 min_batch_fill: float | None = None, precision: str = "auto"):
        import torch

        from syncse_ray.serve.encoder import SentenceEncoder

        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.encoder = SentenceEncoder(model, device=device, precision=precision)
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.min_batch_fill = min_batch_fill
        self.batcher = ContinuousBatcher(self._embed_batch, max_batch_size=max_batch_size,
                                         batch_wait_timeout_s=batch_wait_timeout_s)
        self.encode_s = 0.0  # seconds spent in the model (tokenizing and forward passes)

    def info(self) -> dict[str, Any]:
        return {"dimension": self.encoder.dimension, "max_tokens": self.encoder.max_tokens,
                "path": str(self.encoder.path), "precision": self.encoder.precision}

    def batching_stats(self) -> dict[str, Any]:
        """Embed calls run and model batches run by this replica (how much the batcher merged), the forward
        passes those batches ran as (split by the token budget and fill), and the seconds spent encoding."""
        return {"calls": self.batcher.calls, "batches": self.batcher.batches, "passes": self.encoder.passes,
                "encode_s": self.encode_s, "replica": serve.get_replica_context().replica_id.unique_id}

    async def embed(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        """Unit vectors and the token length of each input (before truncation to the model's max tokens)."""
        return await self.batcher.submit(texts)

    async def _embed_batch(self, chunks: list[list[str]]) -> list[tuple[np.ndarray, list[int]]]:
        texts = [text for chunk in chunks for text in chunk]
        # In a thread, so the replica keeps accepting requests into the next batch while this one runs.
        vectors, counts = await asyncio.to_thread(self._encode, texts)
        results, start = [], 0
        for chunk in chunks:
            end = start + len(chunk)
            results.append((vectors[start:end], counts[start:end]))
            start = end
        return results

    def _encode(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        start = time.perf_counter()
        lengths = self.encoder.count_tokens(texts).lengths  # tokenized once: usage and the batch plan
        vectors = self.encoder.encode_in_batches(texts, max_batch_size=self.max_batch_size,
                                                 max_batch_tokens=self.max_batch_tokens,
                                                 min_fill=self.min_batch_fill, lengths=lengths)
        self.encode_s += time.perf_counter() - start
        return vectors, lengths


@serve.deployment(name=INGRESS_NAME)
@serve.ingress()
class EmbeddingsAPI:
    """HTTP front (`syncse_ray.serve.http.create_api`): auth, body limit, validation, chunking to the embedder,
    response encoding, FAISS search. The FastAPI app is built on the replica over this deployment's state."""

    async def __init__(self, embedder: DeploymentHandle, *, model_id: str, served_names: list[str],
                       limits: RequestLimits, max_batch_size: int, api_key: str | None, index_dir: str | None,
                       corpus: str | None, corpus_fields: tuple[str, str], replica_retries: int = 3):
        self.embedder = embedder
        self.max_batch_size = max_batch_size
        self.replica_retries = replica_retries
        self.resent = 0  # embed calls sent again because their replica died
        self.info = await embedder.info.remote()
        index: VectorIndex | None = None
        if index_dir is not None:
            index = VectorIndex.load(index_dir)
        elif corpus is not None:
            ids, texts = read_corpus(corpus, text_field=corpus_fields[0], id_field=corpus_fields[1])
            wave = CORPUS_CHUNKS_IN_FLIGHT * max_batch_size  # bounded, however large the corpus
            parts = [(await self._embed(texts[i:i + wave]))[0] for i in range(0, len(texts), wave)]
            index = VectorIndex.from_vectors(np.concatenate(parts), ids, texts, model=model_id)
        if index is not None and index.dimension != self.info["dimension"]:
            raise ValueError(f"the index has dimension {index.dimension} but the model "
                             f"{model_id} embeds in {self.info['dimension']}: rebuild it with this model")
        self.backend = ApiBackend(embed=self._embed, model_id=model_id, served_names=set(served_names),
                                  dimension=self.info["dimension"], max_tokens=self.info["max_tokens"],
                                  limits=limits, api_key=api_key, index=index)

    async def _embed_chunk(self, chunk: list[str]) -> tuple[np.ndarray, list[int]]:
        """One embedder call, resent when the replica it ran on died (`retry.py`: embedding is idempotent)."""
        from ray.exceptions import RayActorError

        def resend(attempt: int, exc: BaseException) -> None:
            self.resent += 1
            logger.warning(f"{EMBEDDER_NAME} replica gone ({type(exc).__name__}); resending {len(chunk)} texts, "
                           f"try {attempt + 1} of {self.replica_retries + 1}")

        return await call_with_retries(lambda: self.embedder.embed.remote(chunk), retryable=(RayActorError,),
                                       retries=self.replica_retries, backoff_s=RETRY_BACKOFF_S, on_retry=resend)

    def retry_stats(self) -> dict[str, int]:
        """Embed calls this ingress replica resent because their Embedder replica died."""
        return {"resent": self.resent}

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_api(self.backend)

    async def _embed(self, texts: list[str]) -> tuple[np.ndarray, TokenCounts]:
        """Embed any number of texts as concurrent chunks of at most max_batch_size."""
        chunks = [texts[i:i + self.max_batch_size] for i in range(0, len(texts), self.max_batch_size)]
        parts = await asyncio.gather(*(self._embed_chunk(chunk) for chunk in chunks))
        lengths = [n for _, chunk_lengths in parts for n in chunk_lengths]
        return np.concatenate([v for v, _ in parts]), TokenCounts(lengths, self.info["max_tokens"])


def default_model_id(model: str) -> str:
    """The id clients send as `model`: the bundled name, else the model folder's name."""
    if model.startswith(BUNDLED_PREFIX):
        return model[len(BUNDLED_PREFIX):]
    return Path(model).expanduser().resolve().name if Path(model).expanduser().exists() else model


def read_api_key(env_var: str | None) -> str | None:
    """The bearer token from `env_var`; a named but unset/empty variable is an error (never serve open by
    accident)."""
    if env_var is None:
        return None
    key = os.environ.get(env_var, "").strip()
    if not key:
        raise ConfigError(f"serve.api_key_env names {env_var!r} but that environment variable is unset or empty")
    return key


def build_app(config: ServeConfig | None = None, /, *, api_key: str | None = None, **overrides: Any) -> Application:
    """The Serve application for `config` (a ServeConfig) with field `overrides` (e.g. model=..., corpus=...).

    `api_key` defaults to the value of the env var `config.api_key_env` (read here, where the app is built).
    """
    data = (config or ServeConfig()).model_dump()
    data.update(overrides)
    cfg = ServeConfig.model_validate(data)
    if cfg.model is None:
        raise ConfigError("serve.model is not set: give a model folder or reference")
    if api_key is None:
        api_key = read_api_key(cfg.api_key_env)
    model_id = cfg.model_name or default_model_id(cfg.model)
    on_gpu = cfg.num_gpus_per_replica > 0
    cpus = cfg.num_cpus_per_replica if cfg.num_cpus_per_replica is not None else DEFAULT_CPUS_PER_REPLICA
    scaling: dict[str, Any] = (
        {"num_replicas": cfg.num_replicas} if cfg.num_replicas is not None
        else {"autoscaling_config": cfg.autoscaling.model_dump()}
    )
    embedder = Embedder.options(
        ray_actor_options={"num_cpus": cpus, "num_gpus": cfg.num_gpus_per_replica},
        max_ongoing_requests=2 * cfg.max_batch_size,
        **scaling,
    ).bind(
        cfg.model,
        device="cuda" if on_gpu else "cpu",
        max_batch_size=cfg.max_batch_size,
        max_batch_tokens=cfg.max_batch_tokens,
        min_batch_fill=cfg.min_batch_fill,
        precision=cfg.precision,
        batch_wait_timeout_s=cfg.batch_wait_timeout_s,
        torch_threads=None if on_gpu else max(1, round(cpus)),
    )
    limits = RequestLimits.model_validate(cfg.model_dump(include=set(RequestLimits.model_fields)))
    return EmbeddingsAPI.options(
        ray_actor_options={"num_cpus": cfg.num_cpus_ingress}, max_ongoing_requests=256,
    ).bind(
        embedder,
        model_id=model_id,
        served_names=sorted({model_id, cfg.model}),
        limits=limits,
        max_batch_size=cfg.max_batch_size,
        api_key=api_key,
        index_dir=str(cfg.index) if cfg.index is not None else None,
        corpus=str(cfg.corpus) if cfg.corpus is not None else None,
        corpus_fields=(cfg.corpus_text_field, cfg.corpus_id_field),
        replica_retries=cfg.replica_retries,
    )


def app_builder(args: dict[str, Any]) -> Application:
    """For `serve run syncse_ray.serve.app:app_builder key=value ...` and Serve config files (`args:`).
    Keys are ServeConfig fields; dotted keys reach nested ones (`autoscaling.max_replicas=4`)."""
    data: dict[str, Any] = {}
    for key, value in args.items():
        if isinstance(value, str):
            apply_overrides(data, [f"{key}={value}"])
        else:
            data[key] = value
    return build_app(ServeConfig.model_validate(data))


APP_NAME = "syncse"


def start_server(settings: ServeConfig, ray_config: RayConfig | None = None) -> str:
    """Join or start Ray (`init_ray`), start Serve's HTTP proxy on settings.host:port, deploy the app and
    return its base URL once it is ready. `stop_server()` undoes it."""
    from syncse_ray.runtime.ray_env import init_ray

    build_app(settings)  # a config error (model, key) before any cluster is started or joined
    init_ray(ray_config)
    application = build_app(fit_to_cluster(settings, read_cluster(settings)))
    logging_config = {"enable_access_log": settings.access_log}  # Serve's default: a line a request
    serve.start(http_options={"host": settings.host, "port": settings.port}, logging_config=logging_config)
    serve.run(application, name=APP_NAME, route_prefix="/", logging_config=logging_config)
    return f"http://{settings.host}:{settings.port}"


def read_cluster(settings: ServeConfig) -> ClusterResources:
    """The connected cluster's resources, as `check_fit` reads them. It autoscales when
    `settings.cluster_autoscales` says so, else when Ray's autoscaler config has a node group that can grow
    (what Ray Data reads too); the local cluster `init_ray` started never does."""
    import ray

    from syncse_ray.runtime.ray_env import started_local_cluster

    local = started_local_cluster()
    largest: dict[str, float] = {}
    for node in ray.nodes():
        if node.get("Alive"):
            for key in ("CPU", "GPU"):
                largest[key] = max(largest.get(key, 0.0), float(node.get("Resources", {}).get(key, 0.0)))
    autoscales = settings.cluster_autoscales
    if autoscales is None:
        autoscales = not local and _ray_says_autoscaling()
    return ClusterResources(available=dict(ray.available_resources()), total=dict(ray.cluster_resources()),
                            largest_node=largest, autoscales=autoscales, local=local)


def _ray_says_autoscaling() -> bool:
    """Whether the autoscaler's cluster config (GCS) has a node group that can add nodes. A private Ray API
    (`ray._private.state`, as `ray.data` uses it): anything unexpected counts as a fixed cluster."""
    try:
        import ray._private.state

        config = ray._private.state.state.get_cluster_config()
        if not config or not config.node_group_configs:
            return False
        return any(group.max_count == -1 or group.max_count > group.min_count
                   for group in config.node_group_configs if group.resources and group.max_count != 0)
    except Exception:  # noqa: BLE001 - a private API; unknown means a fixed cluster
        return False


def stop_server() -> None:
    """Shut Serve down (every application and the HTTP proxy) on the connected cluster."""
    serve.shutdown()


def wait_for_interrupt() -> None:
    """Block until SIGINT (Ctrl-C) or SIGTERM (inside `stop_on_signals()`)."""
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


def serve_forever(settings: ServeConfig, ray_config: RayConfig | None = None,
                  on_ready: Callable[[str], None] | None = None) -> None:
    """Serve in the foreground until SIGINT (Ctrl-C) or SIGTERM (`kill`), then shut Serve down.
    `on_ready(base_url)` runs once it is up. The handlers are installed here, not left to Python's default: a
    process started in the background by a script inherits SIGINT ignored (POSIX), Python then installs no
    handler, and Ctrl-C or `kill -INT` would never reach the loop; SIGTERM would end Python without shutting
    Serve down."""
    with stop_on_signals():
        base_url = start_server(settings, ray_config)
        try:
            if on_ready is not None:
                on_ready(base_url)
            wait_for_interrupt()
        finally:
            stop_server()
