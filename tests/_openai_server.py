"""A fault injector on loopback that speaks enough of the OpenAI protocol (GET /v1/models, POST
/v1/chat/completions) to exercise the endpoint writer's client (`syncse_ray.synth.endpoint`). It is NOT the thing
under test and not a model: it answers with canned text, and on a fixed schedule with the faults of a remote
service (429 with Retry-After, 500, an answer slower than the client's timeout, a dropped connection). The tests
that need a real OpenAI-compatible server start `vllm serve` (tests/test_synth_endpoint_serve.py).

A plain `http.server` in a thread (one thread a connection), started by `with FaultServer(...) as server:`.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

# Faults, consumed in order by chat requests, one each: ("status", code[, headers]), ("hang", seconds),
# ("drop",) closes the connection without an answer, ("ok",) a normal answer.
Fault = tuple


def canned_reply(body: dict[str, Any], index: int) -> str:
    """A deterministic answer for the request's last user message (the sentence to rewrite): different per
    candidate index and per seed, so tests can tell candidates apart."""
    last = next((m["content"] for m in reversed(body.get("messages", [])) if m.get("role") == "user"), "")
    words = last.split()[:12] or ["nothing"]
    return f"Candidate {index} with seed {body.get('seed')}: " + " ".join(words)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (a timed-out request, a dropped connection) is part of the schedule."""


class FaultServer:
    """See the module docstring. `faults`: the schedule for chat requests; `then`: what every chat request after
    the schedule gets (("ok",) by default; a fault there never recovers). `honour_n=False` answers one choice
    whatever `n` asks (as some servers do); `logprobs=False` answers without logprobs. `api_key` set: requests
    without `Authorization: Bearer <key>` get 401. `fault_for(body)`, where it returns a fault, answers that request
with it instead of the schedule (a fault by content: deterministic whatever order concurrent requests come in).
`requests` records every chat body received."""

    def __init__(self, *, models: tuple[str, ...] = ("test-model",), api_key: str | None = None,
                 faults: list[Fault] | None = None, then: Fault = ("ok",), honour_n: bool = True,
                 logprobs: bool = True, reply: Callable[[dict[str, Any], int], str] = canned_reply,
                 reject_chat: str | None = None,
                 fault_for: Callable[[dict[str, Any]], Fault | None] | None = None):
        self.models, self.api_key, self.then = models, api_key, then
        self.faults = list(faults or [])
        self.honour_n, self.logprobs, self.reply, self.reject_chat = honour_n, logprobs, reply, reject_chat
        self.fault_for = fault_for
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str | None] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def next_fault(self) -> Fault:
        with self._lock:
            return self.faults.pop(0) if self.faults else self.then

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        n = int(body.get("n") or 1) if self.honour_n else 1
        prompt_tokens = sum(len((m.get("content") or "").split()) for m in body.get("messages", []))
        choices, output_tokens = [], 0
        for i in range(n):
            text = "yes" if body.get("logprobs") else self.reply(body, i)
            output_tokens += len(text.split())
            choice: dict[str, Any] = {"index": i, "message": {"role": "assistant", "content": text},
                                      "finish_reason": "stop"}
            if body.get("logprobs") and self.logprobs:
                choice["logprobs"] = {"content": [{"token": "yes", "logprob": -0.1, "top_logprobs": [
                    {"token": "yes", "logprob": -0.1}, {"token": "no", "logprob": -2.4},
                    {"token": "maybe", "logprob": -5.0}]}]}
            choices.append(choice)
        return {"id": "chatcmpl-test", "object": "chat.completion", "model": body.get("model"), "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": output_tokens,
                          "total_tokens": prompt_tokens + output_tokens}}

    def __enter__(self) -> Self:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                auth = self.headers.get("Authorization")
                outer.authorizations.append(auth)
                if outer.api_key is not None and auth != f"Bearer {outer.api_key}":
                    self._send(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request"}})
                    return False
                return True

            def do_GET(self) -> None:
                if not self._authorized():
                    return
                if self.path.rstrip("/") == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in outer.models]})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self._authorized():
                    return
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                if body.get("model") not in outer.models:
                    self._send(404, {"error": {"message": f"The model `{body.get('model')}` does not exist."}})
                    return
                if outer.reject_chat:
                    self._send(400, {"error": {"message": outer.reject_chat}})
                    return
                with outer._lock:
                    outer.requests.append(body)
                if "too long" in json.dumps(body.get("messages")):
                    self._send(400, {"error": {"message": "This model's maximum context length is 2048 tokens. "
                                                          "However, you requested 4000 tokens."}})
                    return
                fault = (outer.fault_for and outer.fault_for(body)) or outer.next_fault()
                if fault[0] == "status":
                    self._send(fault[1], {"error": {"message": f"injected {fault[1]}"}},
                               fault[2] if len(fault) > 2 else None)
                elif fault[0] == "hang":
                    time.sleep(fault[1])
                    self._send(200, outer.answer(body))
                elif fault[0] == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                else:
                    self._send(200, outer.answer(body))

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, args=(0.02,), name="fault-server", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()


def free_url() -> str:
    """An http URL on loopback where nothing listens (for the unreachable check)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
