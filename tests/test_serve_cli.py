"""`syncse serve`: the real command in a process of its own, serving a saved index over loopback HTTP until SIGINT."""

from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from syncse_ray.cli import app


def test_serve_command_rejects_conflicting_options():
    runner = CliRunner()
    both = runner.invoke(app, ["serve", "bundled:all-minilm-l6-v2", "--replicas", "2", "--max-replicas", "3"])
    assert both.exit_code == 2 and "not both" in both.output
    sources = runner.invoke(app, ["serve", "m", "--corpus", "c.txt", "--index", "idx"])
    assert sources.exit_code == 2 and "either corpus" in sources.output
    assert runner.invoke(app, ["serve"]).exit_code == 2  # no model here or in the config


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_serve_command_serves_a_saved_index_quietly_until_sigint(tmp_path, minilm_path, free_port):
    """The real command in a process of its own (a terminal's file descriptors, its own local Ray) serves a saved
    index; the terminal gets where it serves and where its log is; Ray's and Serve's output go to
    <run_dir>/logs/serve.log, without Serve's line a request (access log off by default: it printed 3,128 lines for
    3,000 requests); SIGINT shuts Serve down and the command exits 0, even when started with SIGINT ignored."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from syncse_ray.serve.index import build_index

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(
        ["The cat sleeps on the sofa.", "Stock prices fell today.", "The rocket reached orbit."])))
    build_index(corpus, minilm_path, tmp_path / "index")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    run_dir = tmp_path / "run"
    cmd = [str(Path(sys.executable).with_name("syncse")), "serve", str(minilm_path), "--index", str(tmp_path / "index"),
           "--port", str(port),
           "--replicas", "1", "--set", f"run_dir={run_dir}"]
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "SYNCSE_VERBOSE")}
    out_path = tmp_path / "terminal.txt"
    with out_path.open("w") as out:
        # SIGINT ignored, as a script's `syncse serve ... &` starts it (POSIX; an ignored signal stays ignored
        # across exec): the command's own handler must still stop it, whatever the shell that launched the tests
        # (CI's did this)
        proc = subprocess.Popen(["sh", "-c", 'trap "" INT; exec "$@"', "sh", *cmd], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 240
            while True:
                assert proc.poll() is None, out_path.read_text()
                assert time.monotonic() < deadline, out_path.read_text()
                try:
                    if httpx.get(base + "/healthz", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(1)
            assert httpx.get(base + "/healthz", timeout=30).json() == {"status": "ok"}
            search = httpx.post(base + "/v1/search", json={"query": "a satellite launch", "top_k": 1}, timeout=60)
            assert search.json()["data"][0]["results"][0]["id"] == "d2", search.text
            for i in range(30):
                r = httpx.post(base + "/v1/embeddings", json={"input": [f"sentence {i}"]}, timeout=60)
                assert r.status_code == 200, r.text
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=120) == 0, out_path.read_text()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
    with pytest.raises(httpx.TransportError):  # the command shut Serve down on its way out
        httpx.get(base + "/healthz", timeout=5)
    terminal = out_path.read_text().splitlines()
    log = run_dir / "logs" / "serve.log"
    assert len(terminal) <= 4, terminal
    assert any(line.startswith("serving ") for line in terminal), terminal
    assert any(line.startswith("logs ") and line.endswith("serve.log") for line in terminal), terminal
    assert not any("INFO" in line for line in terminal), terminal
    text = log.read_text(errors="replace")
    assert "Ray" in text and "Serve" in text, text[-2000:]  # what Ray and Serve printed went to the log
    assert text.count("/v1/embeddings") < 30, text[-2000:]  # no line a request
