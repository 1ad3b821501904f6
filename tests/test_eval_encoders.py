"""Encoders: sentence-transformers vs plain transformers + pooler, an OpenAI-compatible endpoint, the cache."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from syncse_ray.eval import run_eval
from syncse_ray.models.encoders import CachedEncoder, EndpointEncoder, load_encoder
from syncse_ray.models.references import ModelError

SENTENCES = ["a man is playing a guitar .", "a man plays the guitar .", "the stock market fell sharply .",
             "a cat sleeps on the sofa .", "two dogs run across a field ."]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_transformers_avg_pooler_reproduces_the_sentence_transformers_model(minilm_encoder):
    """all-MiniLM-L6-v2 is mean pooling + L2 normalisation: the plain-transformers path with pooler=avg must give
    the same directions (so cosine scores agree)."""
    plain = load_encoder("bundled:all-minilm-l6-v2", pooler="avg")
    np.testing.assert_allclose(_unit(plain.encode(SENTENCES, show_progress=False)),
                               minilm_encoder.encode(SENTENCES, show_progress=False), atol=1e-5)
    cls = load_encoder("bundled:all-minilm-l6-v2", pooler="cls_before_pooler").encode(SENTENCES[:2])
    assert cls.shape == (2, 384) and not np.allclose(_unit(cls), minilm_encoder.encode(SENTENCES[:2]), atol=1e-3)


def test_unknown_pooler_and_missing_model_are_model_errors():
    with pytest.raises(ModelError, match="unknown pooler 'max'"):
        load_encoder("bundled:all-minilm-l6-v2", pooler="max")
    with pytest.raises(ModelError, match="does not exist"):
        load_encoder("/no/such/model/folder")


class _Counting:
    name = "counting"

    def __init__(self):
        self.seen: list[str] = []

    def encode(self, sentences, *, show_progress=True):
        self.seen += list(sentences)
        return np.array([[len(s), s.count("a"), 1.0] for s in sentences], dtype=np.float32)


def test_cache_encodes_each_distinct_sentence_once_and_keeps_order():
    inner = _Counting()
    cached = CachedEncoder(inner)
    first = cached.encode(["bb", "a", "bb"])
    second = cached.encode(["a", "ccc"])
    assert inner.seen == ["bb", "a", "ccc"]
    np.testing.assert_array_equal(first, inner.encode(["bb", "a", "bb"]))
    np.testing.assert_array_equal(second, inner.encode(["a", "ccc"]))


@pytest.fixture(scope="module")
def endpoint(minilm_encoder):
    """A real HTTP server speaking the OpenAI embeddings API, serving the bundled MiniLM (answers in reverse
    order, as the API allows: clients must use `index`)."""
    requests: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, code: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": "minilm", "object": "model"}]})
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append(body)
            if self.path != "/v1/embeddings" or body.get("model") != "minilm":
                self._send(404, {"error": {"message": f"model {body.get('model')!r} not served"}})
                return
            vectors = minilm_encoder.encode(body["input"], show_progress=False)
            data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]
            self._send(200, {"object": "list", "model": "minilm", "data": data[::-1]})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1", requests
    server.shutdown()
    server.server_close()


def test_endpoint_scores_match_the_model_it_serves(endpoint, minilm_encoder, tmp_path):
    url, requests = endpoint
    folder = tmp_path / "senteval" / "STS" / "STSBenchmark"
    folder.mkdir(parents=True)
    pairs = [(0, 1, 4.8), (0, 2, 0.2), (3, 4, 1.5), (1, 3, 0.5), (4, 2, 0.1), (1, 0, 5.0)]
    (folder / "sts-test.csv").write_text("".join(
        f"g\tf\ty\t{i}\t{g}\t{SENTENCES[a]}\t{SENTENCES[b]}\n" for i, (a, b, g) in enumerate(pairs)))
    remote = run_eval(url, ["sts:STSBenchmark"], tmp_path, batch_size=4, show_progress=False)
    local = run_eval(minilm_encoder, ["sts:STSBenchmark"], tmp_path, show_progress=False)
    assert remote["records"][0]["score"] == pytest.approx(local["records"][0]["score"], abs=1e-6)
    assert remote["model"] == url and remote["encoder"] == "EndpointEncoder"
    assert requests and all(len(r["input"]) <= 4 and r["model"] == "minilm" for r in requests)


def test_endpoint_errors_are_model_errors(endpoint):
    url, _ = endpoint
    with pytest.raises(ModelError, match="not served"):
        EndpointEncoder(url, model="other", batch_size=8).encode(["hello"])
    with pytest.raises(ModelError, match="cannot reach the embeddings endpoint"):
        load_encoder("http://127.0.0.1:9/v1")

