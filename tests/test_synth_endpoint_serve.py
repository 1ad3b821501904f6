"""The endpoint writer end to end: `run_synth` with `synth.writer.kind: openai` on a local Ray cluster against vLLM's
own OpenAI-compatible server (`vllm serve` of the bundled SmolLM2 on CPU, started here).

One run folder, three parts: first the config pointed at the fault-injecting server (tests/_openai_server.py; a
fault injector that answers canned text, not a model) that answers one chunk and then 500 forever: the run stops
with one line naming the endpoint and the status, the finished chunk stays. Then the same run against `vllm serve`
(the endpoint is a resource setting: same fingerprint), which is SIGKILLed part-way: the run stops the same way.
Then the server is started again and the run resumes: every input id exactly once, the server's token counts in
the manifest, no GPU and no vLLM in the request actors.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pyarrow.dataset as pads
import pytest
from _openai_server import FaultServer
from _procs import stop_process_group

from syncse_ray.config import load_config
from syncse_ray.synth import run_synth
from syncse_ray.synth.pipeline import SynthEndpointError

REPO = Path(__file__).resolve().parents[1]
SERVED = "smollm2"
pytestmark = pytest.mark.slow


class VllmServer:
    """`vllm serve` of the bundled SmolLM2 on a loopback port with the in-process engine's CPU set-up
    (`engine.vllm_serve_command`: eager, no chunked prefill, a 1 GiB KV cache); started again on the same port after
    a SIGKILL."""

    def __init__(self, model_path: Path, port: int, log: Path):
        from syncse_ray.config.synth import EngineConfig
        from syncse_ray.synth.engine import cpu_binding_env, vllm_serve_command

        engine = EngineConfig()
        self.cmd = vllm_serve_command(sys.executable, model_path, engine, port=port, served_model_name=SERVED,
                                      on_cpu=True)
        self.env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **cpu_binding_env(engine)}
        self.base_url, self.log, self.proc = f"http://127.0.0.1:{port}/v1", log, None

    def start(self) -> None:
        with self.log.open("a") as sink:
            self.proc = subprocess.Popen(self.cmd, stdout=sink, stderr=subprocess.STDOUT, env=self.env,
                                         start_new_session=True)
        started = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"vllm serve exited ({self.proc.returncode}):\n{self.log.read_text()[-4000:]}")
            try:
                if httpx.get(self.base_url + "/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - started > 240:
                pytest.fail(f"vllm serve did not answer within 240 s:\n{self.log.read_text()[-4000:]}")
            time.sleep(1)
        print(f"vllm serve answered after {time.monotonic() - started:.1f} s")

    def sigkill(self) -> None:
        """SIGKILL the server and every process it started (its engine core), as a node's OOM killer would."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=60)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc)


@pytest.fixture(scope="module")
def vllm_server(smollm2_path, free_port, tmp_path_factory):
    server = VllmServer(smollm2_path, free_port(), tmp_path_factory.mktemp("vllm-serve") / "serve.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _ids(folder: Path) -> list[str]:
    return pads.dataset(folder, format="parquet").to_table(columns=["id"]).column("id").to_pylist()


def _served_requests(base_url: str) -> float:
    """Requests vllm serve has finished (its Prometheus counter `vllm:request_success_total`, all reasons)."""
    text = httpx.get(base_url.removesuffix("/v1") + "/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("vllm:request_success_total"))


def _sigkill_when(server: VllmServer, served: float, stop: threading.Event, killed: dict) -> None:
    """SIGKILL the server once it has finished `served` requests (polled), unless `stop` comes first."""
    while not stop.wait(0.1):
        try:
            if _served_requests(server.base_url) >= served:
                server.sigkill()
                killed["at"] = time.monotonic()
                return
        except httpx.HTTPError:
            continue


def test_endpoint_writer_stops_on_failing_and_killed_endpoints_and_resumes_exactly_once(
        tmp_path, data_dir, cache_dir, vllm_server, ray_local):
    lines = (data_dir / "seeds" / "wiki1m_sample.txt").read_text(encoding="utf-8").splitlines()[:12]
    input_path = tmp_path / "sentences.txt"
    input_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    all_ids = [f"p{i:09d}" for i in range(12)]

    def config(base_url: str, *extra: str):
        return load_config(REPO / "configs" / "synth_partial_cpu.yaml", [
            f"run_dir={tmp_path / 'run'}", f"data_dir={data_dir}", f"cache_dir={cache_dir}",
            f"synth.input={input_path}", "synth.limit=null", "synth.chunk_size=4",
            "synth.writer.kind=openai", f"synth.writer.base_url={base_url}", f"synth.writer.model={SERVED}",
            "synth.writer.max_concurrency=8", "synth.writer.price_per_million_input_tokens=0.15",
            "synth.writer.price_per_million_output_tokens=0.6", *extra])

    out = tmp_path / "run" / "synth"
    done_dir = out / "work" / "annotate" / "done"
    # Part 1: the check before the run and the first chunk the writer asks about get answers; every request about
    # another chunk's sentences is held until that chunk is done (judged and written: a chunk whose request gives
    # up stops the run, and chunks in flight with it are redone on resume), then gets 500. Which chunk comes first
    # is Ray Data's choice (one writer actor takes chunks one at a time, in the order they reach it): the fault
    # goes by content and picks the answered chunk by the first request, so no order can hold the writer on a chunk
    # that waits for one it has not started. One deadline for the whole part (past it the fault lands early; on a
    # slow or busy CPU a chunk takes minutes), not one per request: retries must not wait again.
    chunk_of = {line.strip(): i // 4 for i, line in enumerate(lines)}
    answered: list[int] = []
    choose = threading.Lock()
    deadline = time.monotonic() + 540

    def fail_other_chunks(body: dict):
        text = " ".join(str(m.get("content") or "") for m in body.get("messages", []))
        chunk = next((c for s, c in chunk_of.items() if s in text), None)
        if chunk is None:
            return None
        with choose:
            answered[:] = answered or [chunk]
        if chunk == answered[0]:
            return None
        while not any(done_dir.glob("chunk-*.json")) and time.monotonic() < deadline:
            time.sleep(0.2)
        return ("status", 500)

    with FaultServer(models=(SERVED,), fault_for=fail_other_chunks) as failing:
        started = time.monotonic()
        with pytest.raises(SynthEndpointError) as info:
            run_synth(config(failing.base_url, "synth.writer.max_retries=2", "synth.writer.backoff_base_s=0.05",
                             "synth.writer.timeout_s=600"))
        print(f"failing run: {time.monotonic() - started:.1f} s")
    message = str(info.value)
    assert "\n" not in message and f"{failing.base_url}/chat/completions" in message and "HTTP 500" in message
    assert len(list(done_dir.glob("chunk-*.json"))) == 1 and not (out / "stage.json").exists()

    # Part 2: resumed through vllm serve, which is SIGKILLed (with its engine core) once it has finished 12
    # requests (the check before the run's among them) of the 16 the two chunks left need: at least one chunk is
    # still short of answers. The run stops with one line naming the endpoint; what finished stays.
    stop, killed = threading.Event(), {}
    killer = threading.Thread(target=_sigkill_when, args=(vllm_server, 12, stop, killed), daemon=True)
    killer.start()
    started = time.monotonic()
    try:
        with pytest.raises(SynthEndpointError) as info:
            run_synth(config(vllm_server.base_url, "synth.writer.max_retries=2", "synth.writer.backoff_base_s=0.05"))
    finally:
        stop.set()
        killer.join(timeout=90)
    print(f"run through vllm serve, killed after {killed.get('at', 0) - started:.1f} s: {info.value}")
    message = str(info.value)
    assert killed and "\n" not in message and vllm_server.base_url in message
    done_before = len(list(done_dir.glob("chunk-*.json")))
    assert 1 <= done_before < 3 and not (out / "stage.json").exists()

    # Part 3: the server started again; the same run finishes, every input id exactly once.
    vllm_server.start()
    started = time.monotonic()
    result = run_synth(config(vllm_server.base_url))
    print(f"resumed run through the restarted vllm serve: {time.monotonic() - started:.1f} s")
    ids = _ids(out / "data") + _ids(out / "dropped")
    assert sorted(ids) == all_ids, "an id missing or written twice"
    manifest = json.loads((out / "manifest.json").read_text())
    annotate = manifest["phases"]["annotate"]
    assert manifest["chunks_finished_before_this_run"]["annotate"] == done_before and annotate["chunks"] == 3
    assert annotate["requests"] == 24 and annotate["prompt_tokens"] > 0 and annotate["output_tokens"] > 0
    writer = manifest["writer"]
    assert writer["kind"] == "openai" and writer["endpoint"] == vllm_server.base_url and writer["model"] == SERVED
    assert writer["cost_usd"] > 0 and manifest["model_path"] is None
    kept = pads.dataset(out / "data", format="parquet").to_table().to_pylist()
    print(f"kept {len(kept)} of 12: {[(r['sent0'][:40], r['sent1'][:40], r['hard_neg'][:40]) for r in kept[:2]]}")
    assert result.kept == len(kept) and result.kept + result.dropped == 12
    assert all(r["model"] == SERVED and r["candidates"] == 8 for r in kept)
    candidates = pads.dataset(out / "candidates", format="parquet").to_table().to_pylist()
    assert len(candidates) == 12 * 8  # 4 candidates a kind, every row: n honoured by vllm serve
    assert sorted({c["id"] for c in candidates}) == all_ids
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "OpenAI-compatible endpoint" in card and "HTTP requests" in card
