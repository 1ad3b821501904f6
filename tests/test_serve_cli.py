"""`syncse serve`: the real command on the session's local Ray, serving a saved index over loopback HTTP.

Only the command's final wait-for-Ctrl-C is replaced: by a check of the running endpoint, after which the
command shuts Serve down as it does on Ctrl-C.
"""

from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from syncse_ray.cli import app


@pytest.mark.slow
def test_serve_command_serves_a_saved_index(ray_local, minilm_path, tmp_path, monkeypatch, free_port):
    import syncse_ray.serve.app as serve_app
    from syncse_ray.serve.index import build_index

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(
        ["The cat sleeps on the sofa.", "Stock prices fell today.", "The rocket reached orbit."])))
    build_index(corpus, minilm_path, tmp_path / "index")
    base = f"http://127.0.0.1:{free_port()}"
    seen: dict = {}

    def check_running_endpoint() -> None:
        seen["health"] = httpx.get(base + "/healthz", timeout=30).json()
        seen["search"] = httpx.post(base + "/v1/search", json={"query": "a satellite launch", "top_k": 1},
                                    timeout=60).json()

    monkeypatch.setattr(serve_app, "wait_for_interrupt", check_running_endpoint)
    result = CliRunner().invoke(app, ["serve", str(minilm_path), "--index", str(tmp_path / "index"),
                                      "--port", base.rsplit(":", 1)[1], "--replicas", "1"])
    assert result.exit_code == 0, result.output
    assert seen["health"] == {"status": "ok"}
    assert seen["search"]["data"][0]["results"][0]["id"] == "d2"
    try:  # the command shut Serve down on its way out
        httpx.get(base + "/healthz", timeout=5)
        raise AssertionError("the endpoint still answers after the command returned")
    except httpx.TransportError:
        pass


def test_serve_command_rejects_conflicting_options():
    runner = CliRunner()
    both = runner.invoke(app, ["serve", "bundled:all-minilm-l6-v2", "--replicas", "2", "--max-replicas", "3"])
    assert both.exit_code == 2 and "not both" in both.output
    sources = runner.invoke(app, ["serve", "m", "--corpus", "c.txt", "--index", "idx"])
    assert sources.exit_code == 2 and "either corpus" in sources.output
    assert runner.invoke(app, ["serve"]).exit_code == 2  # no model here or in the config
