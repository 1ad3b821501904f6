"""A Serve replica SIGKILLed under load: real local Ray, real Serve HTTP proxy, two MiniLM Embedder replicas,
bounded loopback clients. Requests in flight on the dead replica are resent to the other one (`serve/retry.py`),
Serve starts a replacement, and no request fails."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import pytest
from _processes import own_live_processes

pytestmark = pytest.mark.slow  # a local Ray cluster, Serve, two model replicas

APP = "syncse-faults"
CLIENTS = 4
LOAD_SECONDS = 14.0
KILL_AT = 4.0
TEXTS = [f"sentence number {i} about a cat sitting on the mat near the window" for i in range(8)]


def _embedder_replicas() -> list[int]:
    """Pids of this app's live Embedder replica processes in this session's cluster."""
    return own_live_processes(f"ServeReplica:{APP}:Embedder")


@pytest.mark.timeout(420)
def test_replica_sigkill_under_load_fails_no_request(ray_local, minilm_path, free_port):
    from ray import serve

    from syncse_ray.serve.app import INGRESS_NAME, build_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(model=str(minilm_path), num_replicas=2, num_cpus_per_replica=1, max_batch_size=16,
                        model_name="minilm"),
              name=APP, route_prefix="/")
    url = f"http://127.0.0.1:{port}/v1/embeddings"
    try:
        replicas = _embedder_replicas()
        assert len(replicas) == 2, replicas
        results: list[tuple[float, str]] = []  # (seconds since start, "ok" or what failed)
        start = time.monotonic()

        def client() -> None:
            with httpx.Client(timeout=60) as http:
                while time.monotonic() - start < LOAD_SECONDS:
                    t = time.monotonic() - start
                    try:
                        r = http.post(url, json={"input": TEXTS, "model": "minilm"})
                        ok = r.status_code == 200 and len(r.json()["data"]) == len(TEXTS)
                        results.append((t, "ok" if ok else f"HTTP {r.status_code}: {r.text[:200]}"))
                    except httpx.HTTPError as exc:
                        results.append((t, f"{type(exc).__name__}: {exc}"))

        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for th in threads:
            th.start()
        time.sleep(KILL_AT)
        victim = replicas[0]
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic() - start
        for th in threads:
            th.join(timeout=LOAD_SECONDS + 120)
        after = [r for r in results if r[0] >= killed_at]
        failures = [r for r in results if r[1] != "ok"]
        print(f"{len(results)} requests, {len(after)} sent after the kill at {killed_at:.1f} s, "
              f"{len(failures)} failed")
        assert len(after) >= 10, results  # the load went on past the kill
        assert not failures, failures[:5]
        resent = serve.get_deployment_handle(INGRESS_NAME, APP).retry_stats.remote().result()["resent"]
        print(f"resent embed calls: {resent}")
        # Serve replaces the dead replica.
        deadline = time.monotonic() + 120
        while len(alive := _embedder_replicas()) < 2 or victim in alive:
            assert time.monotonic() < deadline, alive
            time.sleep(2)
    finally:
        serve.delete(APP)
        serve.shutdown()
