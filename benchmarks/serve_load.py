"""Serving throughput and latency vs in-process encoding, in one run.

1. In process: `SentenceEncoder.encode(texts, batch_size=64)` on the texts the clients send (after a warm-up).
2. Over HTTP: a local Ray cluster, the syncse Serve app on a free loopback port, N concurrent clients that each
   send requests of K texts to /v1/embeddings (base64 by default, as the openai client does) for a fixed count.

Prints embeddings/s for both, their ratio, and p50/p99 request latency; `--out FILE` also writes JSON.

    .venv/bin/python benchmarks/serve_load.py --clients 16 --texts-per-request 8 --requests-per-client 24

Texts come from seeds/wiki1m_sample.txt in the data dir ($SYNCSE_DATA_DIR, else ../shared/data) when present.
`--mixed-lengths` makes every `--long-every`-th text long (`--long-join` sentences joined, often past the model's
256 tokens), so requests mix short and long inputs: what `serve.max_batch_tokens` (`--max-batch-tokens`; 0: no
token budget, the count only) splits into forward passes of similar lengths.

    .venv/bin/python benchmarks/serve_load.py --mixed-lengths --clients 8 --texts-per-request 16 \
        --requests-per-client 8 --max-batch-tokens 16384

Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
APP_NAME = "syncse-bench"


def load_texts(count: int, seed: int = 0) -> list[str]:
    """`count` real sentences (wiki1m sample) if the data dir has them, else generated ones."""
    data_dir = Path(os.environ.get("SYNCSE_DATA_DIR") or REPO.parent / "shared" / "data")
    source = data_dir / "seeds" / "wiki1m_sample.txt"
    rng = random.Random(seed)
    if source.is_file():
        lines = [line.strip() for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [lines[rng.randrange(len(lines))] for _ in range(count)]
    words = ["the", "a", "model", "sentence", "encoder", "learns", "from", "data", "written", "by", "a", "language", "model", "on", "many", "topics"]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(8, 40))) for _ in range(count)]


def mix_lengths(texts: list[str], *, long_every: int, join: int, seed: int = 0) -> list[str]:
    """Every `long_every`-th text replaced by `join` texts joined (a long input); the others stay short."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(texts) for _ in range(join)) if i % long_every == 0 else text
            for i, text in enumerate(texts)]


def in_process_throughput(model: str, texts: list[str], batch_size: int) -> float:
    from syncse_ray.serve.encoder import SentenceEncoder

    encoder = SentenceEncoder(model)
    encoder.encode(texts[:batch_size], batch_size=batch_size)  # warm-up
    start = time.perf_counter()
    encoder.encode(texts, batch_size=batch_size)
    return len(texts) / (time.perf_counter() - start)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run_clients(url: str, texts: list[str], *, clients: int, per_request: int, requests_per_client: int,
                      encoding: str) -> tuple[float, list[float], int]:
    """(seconds, per-request latencies, errors) for `clients` concurrent loops of `requests_per_client` each."""
    import httpx

    latencies: list[float] = []
    errors = 0

    async def client(n: int, http: httpx.AsyncClient) -> None:
        nonlocal errors
        for r in range(requests_per_client):
            offset = ((n * requests_per_client + r) * per_request) % len(texts)
            payload = {"input": texts[offset:offset + per_request], "encoding_format": encoding}
            start = time.perf_counter()
            response = await http.post("/v1/embeddings", json=payload)
            latencies.append(time.perf_counter() - start)
            if response.status_code != 200 or len(response.json()["data"]) != per_request:
                errors += 1

    async with httpx.AsyncClient(base_url=url, timeout=300,
                                 limits=httpx.Limits(max_connections=clients)) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(n, http) for n in range(clients)))
        elapsed = time.perf_counter() - start
    return elapsed, latencies, errors


def serve_throughput(args: argparse.Namespace, texts: list[str]) -> dict:
    import ray
    from ray import serve

    from syncse_ray.serve.app import build_app

    ray.init(address="local", num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False)
    port = _free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(model=args.model, num_replicas=args.replicas, num_cpus_per_replica=args.cpus_per_replica,
                            max_batch_size=args.batch_size, batch_wait_timeout_s=args.batch_wait_timeout_s,
                            max_batch_tokens=args.max_batch_tokens or None,
                            min_batch_fill=args.min_batch_fill or None),
                  name=APP_NAME, route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        kwargs = {"clients": args.clients, "per_request": args.texts_per_request, "encoding": args.encoding}
        asyncio.run(run_clients(url, texts, requests_per_client=2, **kwargs))  # warm-up, every replica
        before = replica_stats(args.replicas)
        elapsed, latencies, errors = asyncio.run(
            run_clients(url, texts, requests_per_client=args.requests_per_client, **kwargs))
        stats = {key: value - before[key] for key, value in replica_stats(args.replicas).items()}
    finally:
        serve.shutdown()
        ray.shutdown()
    latencies.sort()
    return {
        "embeddings_per_s": len(latencies) * args.texts_per_request / elapsed,
        "requests": len(latencies),
        "errors": errors,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        # where the time went: texts per model batch, forward passes, the share of the run the model(s) worked
        "texts_per_batch": len(latencies) * args.texts_per_request / max(1, stats["batches"]),
        "passes": stats["passes"],
        "model_busy": stats["encode_s"] / (elapsed * args.replicas),
    }


def replica_stats(replicas: int) -> dict[str, float]:
    """`Embedder.batching_stats()` summed over the replicas (calls go to replicas at random; enough of them
    reach every replica)."""
    from ray import serve

    from syncse_ray.serve.app import EMBEDDER_NAME

    handle = serve.get_deployment_handle(EMBEDDER_NAME, app_name=APP_NAME)
    seen: dict[str, dict[str, float]] = {}
    for _ in range(20 * replicas):  # no handle call names a replica, so ask until each has answered
        stats = handle.batching_stats.remote().result()
        seen[stats["replica"]] = stats
        if len(seen) == replicas:
            break
    return {key: sum(s[key] for s in seen.values()) for key in ("calls", "batches", "passes", "encode_s")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bundled:all-minilm-l6-v2")
    parser.add_argument("--clients", type=int, default=16, help="concurrent HTTP clients")
    parser.add_argument("--texts-per-request", type=int, default=8)
    parser.add_argument("--requests-per-client", type=int, default=24)
    parser.add_argument("--encoding", choices=["float", "base64"], default="base64")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--cpus-per-replica", type=float, default=float(os.cpu_count() or 1),
                        help="also the torch threads per replica (default: all cores, like in-process)")
    parser.add_argument("--batch-size", type=int, default=64, help="max_batch_size, and the in-process batch")
    parser.add_argument("--batch-wait-timeout-s", type=float, default=0.01)
    parser.add_argument("--max-batch-tokens", type=int, default=16384,
                        help="serve.max_batch_tokens: padded tokens per forward pass (0: no token budget)")
    parser.add_argument("--min-batch-fill", type=float, default=0.8,
                        help="serve.min_batch_fill: least share of real tokens in a forward pass (0: off)")
    parser.add_argument("--mixed-lengths", action="store_true", help="mix short and long inputs (see above)")
    parser.add_argument("--long-every", type=int, default=4, help="with --mixed-lengths: every Nth text is long")
    parser.add_argument("--long-join", type=int, default=12, help="with --mixed-lengths: sentences per long text")
    parser.add_argument("--ray-cpus", type=int, default=8, help="logical CPUs of the local Ray cluster")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()

    # The timed phase sends each of these texts once; in process encodes the same texts.
    texts = load_texts(args.clients * args.requests_per_client * args.texts_per_request)
    if args.mixed_lengths:
        texts = mix_lengths(texts, long_every=args.long_every, join=args.long_join)
    baseline = in_process_throughput(args.model, texts, args.batch_size)
    served = serve_throughput(args, texts)
    result = {"in_process_embeddings_per_s": baseline, "serve": served,
              "ratio": served["embeddings_per_s"] / baseline, "settings": vars(args) | {"out": str(args.out)},
              "cpu_count": os.cpu_count()}
    mix = f", mixed lengths (every {args.long_every}th text {args.long_join} sentences)" if args.mixed_lengths else ""
    print(f"in-process encode (batch {args.batch_size}{mix}): {baseline:.1f} embeddings/s")
    print(f"serve, {args.clients} clients x {args.texts_per_request} texts/request ({args.encoding}): "
          f"{served['embeddings_per_s']:.1f} embeddings/s, p50 {served['p50_ms']:.0f} ms, "
          f"p99 {served['p99_ms']:.0f} ms, {served['errors']} errors / {served['requests']} requests "
          f"(max_batch_tokens {args.max_batch_tokens or 'off'}, min_batch_fill {args.min_batch_fill or 'off'})")
    print(f"  {served['texts_per_batch']:.1f} texts per model batch, {served['passes']} forward passes, "
          f"model busy {100 * served['model_busy']:.0f}% of the run")
    print(f"ratio serve / in-process: {result['ratio']:.2f}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
