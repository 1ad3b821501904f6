"""An OpenAI-compatible chat-completions endpoint as the LLM that writes and judges (`synth.writer.kind: openai`).

Pure: no Ray, no vLLM (httpx and asyncio only), so the request actors need no GPU and the logic is tested without a
cluster. What it does:

- request bodies from the same prompts and sampling as the vLLM writer (`chat_body`, `judge_body`): k candidates
  through the API's `n`, seeds passed where the API takes them; a server that returns fewer than `n` choices is
  asked again one candidate at a time (seed + i for the i-th, as vLLM seeds the i-th of n samples), and the
  client remembers it and sends k requests from then on;
- faults of a remote service (`RetryPolicy`, `classify`): 429, 408, 409, 5xx, connection errors and timeouts are
  retried with exponential backoff and bounded jitter, a `Retry-After` (or `retry-after-ms`) header wins; a
  request still failing after the retries raises `EndpointRequestFailed`, one line naming the endpoint and the
  last status (its chunk fails; finished chunks are kept and a rerun resumes);
- a prompt the server says does not fit the model's context (HTTP 400 about the context length) is that request's
  `too_long_for_context` drop, as with the vLLM writer; any other 4xx fails the chunk;
- accounting: prompt/output tokens from each response's `usage`, retries and HTTP calls per request;
- rate limits per actor (`RateLimiter`: requests and estimated tokens per minute, evenly spaced) and bounded
  concurrency (`max_concurrency` requests in flight);
- checks before a run (`check_endpoint`): the endpoint reachable, the key accepted, the model served, a chat
  request accepted, and logprobs returned when the LLM judge needs them.

The API key (`ApiKey`) is read from the environment variable the config names, travels only in the Authorization
header and never appears in a repr, a message or a file.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import os
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from syncse_ray.config.synth import SamplingConfig, SynthConfig, WriterConfig
from syncse_ray.errors import SyncseError, SyncseRunError
from syncse_ray.synth import filters
from syncse_ray.synth.judge import LLM_TOP_LOGPROBS, yes_probability

# Statuses worth another try: rate limited, request timeout, conflict/too early, and every server error.
RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
CHAT_PATH = "/chat/completions"
MODELS_PATH = "/models"
CHARS_PER_TOKEN = 4  # prompt-size estimate for the tokens-per-minute limit (no tokenizer on this side)
_CONTEXT_OVERFLOW = re.compile(r"context (length|size|window)|maximum.{0,40}tokens|too long|too many tokens|"
                               r"exceeds the", re.IGNORECASE)


class EndpointError(SyncseError):
    """The endpoint cannot be used as configured, found before any chunk is written (exit 2)."""


class EndpointUnreachable(EndpointError):
    """No HTTP answer from the endpoint (refused, DNS, TLS, timeout)."""


class EndpointAuthError(EndpointError):
    """The key is missing or refused (HTTP 401/403)."""


class EndpointModelError(EndpointError):
    """The model is not among the endpoint's /models."""


class EndpointRejected(EndpointError):
    """The endpoint refuses the requests the run would send (a chat template it rejects, no logprobs)."""


class EndpointRequestFailed(SyncseRunError):
    """A request still failed after its retries (or with a status not worth retrying): its chunk fails, the run
    stops (exit 1). Finished chunks are kept; the same command resumes."""


class ContextOverflow(Exception):
    """The server says the prompt and max_tokens do not fit the model's context (that request's drop reason)."""


@dataclass(frozen=True)
class ApiKey:
    """The API key; its repr hides it, so it cannot reach a log or a message by accident."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "ApiKey(***)"

    __str__ = __repr__


def read_api_key(env_name: str | None, environ: dict[str, str] | None = None) -> ApiKey | None:
    """The key from the environment variable `env_name` (None: no key); an unset or empty variable is an error."""
    if env_name is None:
        return None
    value = (os.environ if environ is None else environ).get(env_name, "").strip()
    if not value:
        raise EndpointAuthError(f"synth.writer.api_key_env: the environment variable {env_name} is not set (or "
                                "empty); export the API key there, or set synth.writer.api_key_env=null for a "
                                "server without a key")
    return ApiKey(value)


def served_model(synth: SynthConfig) -> str:
    """The model name the endpoint is asked for: `synth.writer.model`, else `synth.model`."""
    return synth.writer.model or synth.model


def _headers(api_key: ApiKey | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if api_key is not None:
        headers["Authorization"] = f"Bearer {api_key.value}"
    return headers


# -- request bodies and responses -------------------------------------------------------------------------------


def chat_body(model: str, messages: list[dict[str, str]], sampling: SamplingConfig, *, n: int,
              seed: int | None) -> dict[str, Any]:
    """The chat-completions body for one request: the writer's sampling, `n` candidates, its seed."""
    body: dict[str, Any] = {"model": model, "messages": messages, "temperature": sampling.temperature,
                            "top_p": sampling.top_p, "presence_penalty": sampling.presence_penalty,
                            "frequency_penalty": sampling.frequency_penalty, "max_tokens": sampling.max_tokens}
    if n > 1:
        body["n"] = n
    if seed is not None:
        body["seed"] = seed
    return body


def judge_body(model: str, messages: list[dict[str, str]]) -> dict[str, Any]:
    """The LLM judge's yes/no question: one greedy token with its top log-probabilities."""
    return {"model": model, "messages": messages, "temperature": 0.0, "max_tokens": 1, "logprobs": True,
            "top_logprobs": LLM_TOP_LOGPROBS}


def estimated_tokens(body: dict[str, Any]) -> int:
    """What a request may cost against a tokens-per-minute limit: its prompt (characters / 4) and max_tokens x n."""
    prompt = sum(len(m.get("content") or "") for m in body.get("messages", ())) // CHARS_PER_TOKEN
    return prompt + int(body.get("max_tokens") or 0) * int(body.get("n") or 1)


def choices(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The response's choices in index order."""
    return sorted(payload.get("choices") or [], key=lambda c: c.get("index", 0))


def choice_text(choice: dict[str, Any]) -> str:
    return (choice.get("message") or {}).get("content") or ""


def usage_tokens(payload: dict[str, Any]) -> tuple[int, int]:
    """(prompt tokens, output tokens) from the response's `usage`; (0, 0) when the server sends none."""
    usage = payload.get("usage") or {}
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


def top_logprobs(payload: dict[str, Any]) -> dict[str, float] | None:
    """{token: logprob} of the first answer token's top alternatives, or None when the response has no logprobs."""
    ch = choices(payload)
    content = ((ch[0].get("logprobs") or {}).get("content") or []) if ch else []
    if not content or not content[0].get("top_logprobs"):
        return None
    return {t.get("token") or "": float(t.get("logprob", -math.inf)) for t in content[0]["top_logprobs"]}


# -- faults --------------------------------------------------------------------------------------------------


def parse_retry_after(headers: httpx.Headers | dict[str, str], now: float | None = None) -> float | None:
    """Seconds to wait that the server asked for: `retry-after-ms`, or `Retry-After` as seconds or an HTTP date;
    None when there is none (or it cannot be read)."""
    get = headers.get
    ms = get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with bounded jitter. Retry r (1-based) waits base x 2^(r-1), capped at `max_s`, times a
    factor in [1 - jitter, 1]; a server's Retry-After is waited in full, plus up to 10% of it (at most 1 s) so
    that the actors it told to wait do not come back at once."""

    max_retries: int = 6
    base_s: float = 1.0
    max_s: float = 60.0
    jitter: float = 0.5

    @classmethod
    def from_config(cls, writer: WriterConfig) -> RetryPolicy:
        return cls(writer.max_retries, writer.backoff_base_s, writer.backoff_max_s)

    def delay(self, retry: int, retry_after: float | None = None, rand: float = 0.0) -> float:
        """Seconds before retry `retry` (1-based); `rand` in [0, 1) is the jitter draw."""
        if retry_after is not None:
            return retry_after + rand * min(1.0, 0.1 * retry_after)
        backoff = min(self.max_s, self.base_s * 2 ** (retry - 1))
        return backoff * (1.0 - self.jitter * rand)


@dataclass(frozen=True)
class Outcome:
    """What one HTTP attempt came to: a payload (done), or a status and whether it is worth retrying."""

    payload: dict[str, Any] | None
    status: str  # "HTTP 200", "HTTP 429 Too Many Requests: ...", "ReadTimeout after 5 s", ...
    retryable: bool = False
    retry_after: float | None = None
    code: int | None = None
    message: str = ""


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error_message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return _one_line(response.text)
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            return _one_line(err.get("message") or err.get("detail") or json_dumps(err))
        if isinstance(err, str):
            return _one_line(err)
        return _one_line(data.get("message") or data.get("detail") or json_dumps(data))
    return _one_line(json_dumps(data))


def json_dumps(data: Any) -> str:
    import json

    return json.dumps(data, default=str)


def classify(response: httpx.Response | None = None, exc: BaseException | None = None,
             timeout_s: float | None = None) -> Outcome:
    """One attempt's outcome from its response or the exception it raised."""
    if exc is not None:
        if isinstance(exc, httpx.TimeoutException):
            return Outcome(None, f"{type(exc).__name__}: no answer within {timeout_s:g} s", retryable=True)
        if isinstance(exc, httpx.TransportError):  # refused, reset, dropped mid-answer, protocol errors
            return Outcome(None, _one_line(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__),
                           retryable=True)
        raise exc
    assert response is not None
    code = response.status_code
    if code == 200:
        try:
            payload = response.json()
        except ValueError:
            return Outcome(None, "HTTP 200 with a body that is not JSON", retryable=True, code=code)
        if not isinstance(payload, dict) or "choices" not in payload:
            return Outcome(None, f"HTTP 200 without choices: {_one_line(response.text)}", retryable=True, code=code)
        return Outcome(payload, "HTTP 200", code=code)
    message = _error_message(response)
    status = f"HTTP {code} {response.reason_phrase}".rstrip() + (f": {message}" if message else "")
    retryable = code in RETRYABLE_STATUS or code >= 500
    return Outcome(None, status, retryable=retryable, retry_after=parse_retry_after(response.headers), code=code,
                   message=message)


def is_context_overflow(outcome: Outcome) -> bool:
    """An HTTP 400 that says the prompt and max_tokens do not fit the model's context."""
    return outcome.code == 400 and bool(_CONTEXT_OVERFLOW.search(outcome.message))


class RateLimiter:
    """Requests and tokens per minute for one actor, as evenly spaced slots: each call books the next slot and
    says how long to wait for it. No lock needed on one event loop (no await between reading and booking)."""

    def __init__(self, requests_per_minute: float | None = None, tokens_per_minute: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.request_interval = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self.token_interval = 60.0 / tokens_per_minute if tokens_per_minute else 0.0
        self._clock = clock
        self._next_request = self._next_token = -math.inf

    def reserve(self, tokens: int) -> float:
        """Book a request of `tokens` (estimated); returns the seconds to wait before sending it."""
        now = self._clock()
        wait = 0.0
        if self.request_interval:
            slot = max(now, self._next_request)
            self._next_request = slot + self.request_interval
            wait = slot - now
        if self.token_interval:
            slot = max(now, self._next_token)
            self._next_token = slot + tokens * self.token_interval
            wait = max(wait, slot - now)
        return wait


# -- the client the request actors use ---------------------------------------------------------------------


@dataclass
class Answer:
    """One request's candidates and what it cost."""

    texts: list[str]
    finish_reasons: list[str | None]
    prompt_tokens: int = 0
    output_tokens: int = 0
    retries: int = 0
    calls: int = 0


class EndpointClient:
    """Async chat-completions calls with retries, rate limits and bounded concurrency. `generate` and `judge` run
    a whole chunk's requests (their own event loop) and return when every one is answered; the first request that
    gives up cancels the rest and raises `EndpointRequestFailed`."""

    def __init__(self, base_url: str, model: str, api_key: ApiKey | None = None, *, timeout_s: float = 120.0,
                 policy: RetryPolicy | None = None, limiter: RateLimiter | None = None, max_concurrency: int = 16,
                 rand: Callable[[], float] = random.random, transport: httpx.AsyncBaseTransport | None = None):
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + CHAT_PATH
        self.model = model
        self._api_key = api_key
        self.timeout_s = timeout_s
        self.policy = policy or RetryPolicy()
        self.limiter = limiter or RateLimiter()
        self.max_concurrency = max_concurrency
        self._rand = rand
        self._transport = transport
        self.n_honoured: bool | None = None  # unknown until a request with n > 1 is answered

    @classmethod
    def from_config(cls, synth: SynthConfig, api_key: ApiKey | None) -> EndpointClient:
        """One actor's client: the run's rate limits split evenly over the `writer.num_actors` actors."""
        w = synth.writer
        share = w.num_actors
        limiter = RateLimiter(w.requests_per_minute and w.requests_per_minute / share,
                              w.tokens_per_minute and w.tokens_per_minute / share)
        return cls(w.base_url or "", served_model(synth), api_key, timeout_s=w.timeout_s,
                   policy=RetryPolicy.from_config(w), limiter=limiter, max_concurrency=w.max_concurrency)

    def __repr__(self) -> str:
        return f"EndpointClient({self.url!r}, model={self.model!r})"

    def _client(self) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency)
        return httpx.AsyncClient(headers=_headers(self._api_key), timeout=httpx.Timeout(self.timeout_s),
                                 limits=limits, transport=self._transport)

    async def post(self, client: httpx.AsyncClient, gate: asyncio.Semaphore,
                   body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """POST one body until it is answered: (payload, retries). Raises `ContextOverflow` for a prompt that
        does not fit, `EndpointRequestFailed` when the retries are spent or the status is not worth retrying."""
        retries = 0
        while True:
            wait = self.limiter.reserve(estimated_tokens(body))
            if wait > 0:
                await asyncio.sleep(wait)
            async with gate:
                try:
                    response = await client.post(self.url, json=body)
                    outcome = classify(response)
                except httpx.HTTPError as exc:
                    outcome = classify(exc=exc, timeout_s=self.timeout_s)
            if outcome.payload is not None:
                return outcome.payload, retries
            if is_context_overflow(outcome):
                raise ContextOverflow(outcome.status)
            if not outcome.retryable or retries >= self.policy.max_retries:
                attempts = retries + 1
                raise EndpointRequestFailed(
                    f"synth writer: {self.url} (model {self.model!r}) failed after {attempts} attempt"
                    f"{'s' if attempts != 1 else ''}; last: {outcome.status}. Finished chunks are kept: rerun the "
                    "same command to resume")
            retries += 1
            await asyncio.sleep(self.policy.delay(retries, outcome.retry_after, self._rand()))

    async def _candidates(self, client: httpx.AsyncClient, gate: asyncio.Semaphore, messages: list[dict[str, str]],
                          sampling: SamplingConfig, k: int, seed: int | None) -> Answer:
        """k candidates: one request with n=k, topped up one at a time (seed + i) if fewer come back."""
        answer = Answer([], [])
        if k > 1 and self.n_honoured is not False or k == 1:
            payload, retries = await self.post(client, gate, chat_body(self.model, messages, sampling, n=k,
                                                                       seed=seed))
            self._add(answer, payload, retries)
            if k > 1:
                self.n_honoured = len(answer.texts) >= k
        rest = range(len(answer.texts), k)
        if rest:
            payloads = await asyncio.gather(*(self.post(client, gate, chat_body(
                self.model, messages, sampling, n=1, seed=None if seed is None else seed + i)) for i in rest))
            for payload, retries in payloads:
                self._add(answer, payload, retries, limit=1)
        del answer.texts[k:], answer.finish_reasons[k:]
        return answer

    @staticmethod
    def _add(answer: Answer, payload: dict[str, Any], retries: int, limit: int | None = None) -> None:
        got = choices(payload)[:limit]
        answer.texts += [choice_text(c) for c in got]
        answer.finish_reasons += [c.get("finish_reason") for c in got]
        prompt, output = usage_tokens(payload)
        answer.prompt_tokens += prompt
        answer.output_tokens += output
        answer.retries += retries
        answer.calls += retries + 1

    def generate(self, jobs: Sequence[tuple[list[dict[str, str]], SamplingConfig, int, int | None]],
                 on_done: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
        """One result per (messages, sampling, k, seed), in order, in the vLLM writer's shape: {texts,
        prompt_tokens, output_tokens, truncated, error, retries, calls}. `on_done(1, output_tokens)` is called as
        each request is answered (progress)."""

        async def one(client, gate, messages, sampling, k, seed) -> dict[str, Any]:
            try:
                answer = await self._candidates(client, gate, messages, sampling, k, seed)
            except ContextOverflow:
                result = {"texts": [], "prompt_tokens": 0, "output_tokens": 0, "truncated": 0,
                          "error": filters.TOO_LONG_FOR_CONTEXT, "retries": 0, "calls": 1}
            else:
                result = {"texts": answer.texts, "prompt_tokens": answer.prompt_tokens,
                          "output_tokens": answer.output_tokens,
                          "truncated": sum(r == "length" for r in answer.finish_reasons), "error": None,
                          "retries": answer.retries, "calls": answer.calls}
            if on_done is not None:
                on_done(1, result["output_tokens"])
            return result

        async def run() -> list[dict[str, Any]]:
            gate = asyncio.Semaphore(self.max_concurrency)
            async with self._client() as client:
                return await _gather_or_cancel([one(client, gate, *job) for job in jobs])

        return asyncio.run(run()) if jobs else []

    def judge(self, conversations: Sequence[list[dict[str, str]]]) -> tuple[list[float], dict[str, int]]:
        """P(yes) for each yes/no question (`judge.yes_probability` of the first token's top logprobs) and what the
        questions cost ({prompt_tokens, output_tokens, retries, calls}). A response without logprobs fails the chunk (the run's check makes that rare)."""

        async def one(client, gate, messages) -> tuple[float, int, int, int]:
            payload, retries = await self.post(client, gate, judge_body(self.model, messages))
            top = top_logprobs(payload)
            if top is None:
                raise EndpointRequestFailed(f"synth judge: {self.url} (model {self.model!r}) answered without "
                                            "logprobs; synth.judge.method llm needs them (use embedding)")
            return (yes_probability(top), *usage_tokens(payload), retries)

        async def run() -> list[tuple[float, int, int, int]]:
            gate = asyncio.Semaphore(self.max_concurrency)
            async with self._client() as client:
                return await _gather_or_cancel([one(client, gate, m) for m in conversations])

        scored = asyncio.run(run()) if conversations else []
        return ([s[0] for s in scored], {"prompt_tokens": sum(s[1] for s in scored),
                                         "output_tokens": sum(s[2] for s in scored),
                                         "retries": sum(s[3] for s in scored),
                                         "calls": sum(s[3] + 1 for s in scored)})


async def _gather_or_cancel(coros: list) -> list:
    """Run `coros` concurrently and return their results in order; the first that raises cancels the others."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


# -- checks before a run ----------------------------------------------------------------------------------------


PROBE_MESSAGES = [{"role": "system", "content": "Answer with one word: yes or no."},
                  {"role": "user", "content": "Is the sky blue on a clear day?"}]


def _probe(client: httpx.Client, method: str, url: str, policy: RetryPolicy, timeout_s: float,
           body: dict[str, Any] | None = None, sleep: Callable[[float], None] = time.sleep) -> httpx.Response:
    """One check request: unreachable (no HTTP answer at all) fails at once; 429/5xx are retried per `policy`."""
    retries = 0
    while True:
        try:
            response = client.request(method, url, json=body)
        except httpx.HTTPError as exc:
            outcome = classify(exc=exc, timeout_s=timeout_s)
            raise EndpointUnreachable(f"synth.writer.base_url: cannot reach {url}: {outcome.status}") from None
        outcome = classify(response) if response.status_code != 200 else None
        if outcome is None or not outcome.retryable or retries >= policy.max_retries:
            return response
        retries += 1
        sleep(policy.delay(retries, outcome.retry_after, random.random()))


def _refused(response: httpx.Response, url: str, key_env: str | None) -> EndpointAuthError:
    why = (f"the key in ${key_env} was refused" if key_env else
           "no key was sent (set synth.writer.api_key_env to the environment variable holding it)")
    return EndpointAuthError(f"synth.writer: {url} answered HTTP {response.status_code} "
                             f"{response.reason_phrase}: {why}")


def check_endpoint(writer: WriterConfig, model: str, api_key: ApiKey | None, *, needs_logprobs: bool = False,
                   transport: httpx.BaseTransport | None = None,
                   sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """Before a run: the endpoint answers, accepts the key, serves `model`, accepts a chat request for it (a
    model without a chat template is refused here), and returns logprobs when `needs_logprobs` (the LLM judge).
    Returns the served model ids; raises an `EndpointError` (one line) otherwise."""
    base = (writer.base_url or "").rstrip("/")
    policy = RetryPolicy(min(writer.max_retries, 3), writer.backoff_base_s, writer.backoff_max_s)
    with httpx.Client(headers=_headers(api_key), timeout=httpx.Timeout(writer.timeout_s),
                      transport=transport) as client:
        url = base + MODELS_PATH
        response = _probe(client, "GET", url, policy, writer.timeout_s, sleep=sleep)
        if response.status_code in (401, 403):
            raise _refused(response, url, writer.api_key_env)
        if response.status_code != 200:
            raise EndpointUnreachable(f"synth.writer.base_url: {url} answered {classify(response).status} (is "
                                      f"{base} an OpenAI-compatible API root, ending in /v1?)")
        try:
            served = [str(m.get("id")) for m in response.json().get("data") or []]
        except (ValueError, AttributeError):
            raise EndpointUnreachable(f"synth.writer.base_url: {url} did not answer a model list (is {base} an "
                                      "OpenAI-compatible API root, ending in /v1?)") from None
        if model not in served:
            listed = ", ".join(served[:8]) + (f" and {len(served) - 8} more" if len(served) > 8 else "")
            raise EndpointModelError(f"synth.writer.model: {model!r} is not served by {base} (it serves: "
                                     f"{listed or 'nothing'}); set synth.writer.model to one of them")
        url = base + CHAT_PATH
        bodies = [{"model": model, "messages": PROBE_MESSAGES, "max_tokens": 1, "temperature": 0.0}]
        if needs_logprobs:
            bodies.append(judge_body(model, PROBE_MESSAGES))
        for body in bodies:
            response = _probe(client, "POST", url, policy, writer.timeout_s, body=body, sleep=sleep)
            if response.status_code in (401, 403):
                raise _refused(response, url, writer.api_key_env)
            outcome = classify(response)
            what = "the LLM judge's logprobs request" if body.get("logprobs") else "a chat request"
            if outcome.payload is None:
                raise EndpointRejected(f"synth.writer: {url} refused {what} for {model!r}: {outcome.status}")
            if body.get("logprobs") and top_logprobs(outcome.payload) is None:
                raise EndpointRejected(f"synth.judge.method: the LLM judge needs top logprobs, and {url} answered "
                                       f"{model!r} without them; use synth.judge.method=embedding with this "
                                       "endpoint")
    return served
