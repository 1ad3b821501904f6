"""The endpoint writer (`synth.writer.kind: openai`, syncse_ray/synth/endpoint.py) without Ray: the retry policy,
rate limits, request bodies and accounting as pure functions; then the real client against a fault-injecting
OpenAI-protocol server on loopback (tests/_openai_server.py: a fault injector, not the thing under test):
retries, giving up in one line, k candidates when the server ignores `n`, the checks before a run, and a whole
chunk through the request step and the finishing step. Fast: no Ray, no model."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from _openai_server import FaultServer, free_url
from typer.testing import CliRunner

from syncse_ray.config import dump_config, load_config
from syncse_ray.config.synth import SamplingConfig, SynthConfig
from syncse_ray.synth import filters
from syncse_ray.synth.endpoint import (
    ApiKey,
    EndpointAuthError,
    EndpointClient,
    EndpointModelError,
    EndpointRejected,
    EndpointRequestFailed,
    EndpointUnreachable,
    RateLimiter,
    RetryPolicy,
    chat_body,
    check_endpoint,
    classify,
    estimated_tokens,
    is_context_overflow,
    judge_body,
    parse_retry_after,
    read_api_key,
    top_logprobs,
    usage_tokens,
)

REPO = Path(__file__).resolve().parents[1]
MESSAGES = [{"role": "system", "content": "Rewrite."}, {"role": "user", "content": "A cat sat on the mat."}]
SAMPLING = SamplingConfig(temperature=0.7, top_p=0.9, presence_penalty=0.1, frequency_penalty=0.2, max_tokens=40)


# -- pure: policy, limits, bodies, accounting, config ------------------------------------------------------------


def test_backoff_doubles_with_bounded_jitter_and_a_cap():
    policy = RetryPolicy(max_retries=8, base_s=1.0, max_s=10.0, jitter=0.5)
    assert [policy.delay(r, rand=0.0) for r in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 10.0]
    for retry in range(1, 8):
        full = min(10.0, 2 ** (retry - 1))
        for rand in (0.0, 0.3, 0.999):
            assert full * 0.5 <= policy.delay(retry, rand=rand) <= full


def test_retry_after_is_honoured_in_full_plus_a_bounded_jitter():
    policy = RetryPolicy(base_s=1.0, max_s=2.0)
    for after in (0.0, 0.5, 7.0, 120.0):  # above max_s too: the server's word wins
        for rand in (0.0, 0.5, 0.999):
            delay = policy.delay(3, retry_after=after, rand=rand)
            assert after <= delay <= after + min(1.0, 0.1 * after)


def test_retry_after_headers():
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "0.25"}) == 0.25
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "Sun, 06 Dec 2026 12:00:10 GMT"},
                             now=1796558400.0) == pytest.approx(10.0)  # 2026-12-06 12:00:00 UTC
    assert parse_retry_after({"retry-after": "soon"}) is None and parse_retry_after({}) is None


def test_which_outcomes_are_retried():
    import httpx

    def response(code, headers=None, body=None):
        return httpx.Response(code, headers=headers, json=body or {"error": {"message": "x"}})

    limited = classify(response(429, {"Retry-After": "3"}))
    assert limited.retryable and limited.retry_after == 3.0 and limited.status.startswith("HTTP 429")
    assert classify(response(500)).retryable and classify(response(503)).retryable
    assert classify(response(408)).retryable
    assert not classify(response(400)).retryable and not classify(response(401)).retryable
    assert classify(exc=httpx.ReadTimeout("slow"), timeout_s=5).retryable
    assert classify(exc=httpx.ConnectError("refused")).retryable
    assert classify(response(200, body={"choices": []})).payload == {"choices": []}
    assert classify(response(200, body={"nope": 1})).retryable  # a 200 without choices is not an answer
    overflow = classify(response(400, body={"error": {"message": "This model's maximum context length is 2048 "
                                                                  "tokens. However, you requested 2500 tokens"}}))
    assert is_context_overflow(overflow) and not is_context_overflow(classify(response(400)))


def test_rate_limits_space_requests_and_tokens_evenly():
    now = [100.0]
    limiter = RateLimiter(requests_per_minute=60, clock=lambda: now[0])
    assert [limiter.reserve(10) for _ in range(3)] == [0.0, 1.0, 2.0]
    now[0] = 110.0  # idle a while: no debt carried
    assert limiter.reserve(10) == 0.0
    tokens = RateLimiter(tokens_per_minute=600, clock=lambda: now[0])  # 10 tokens/s
    assert tokens.reserve(50) == 0.0 and tokens.reserve(50) == pytest.approx(5.0)
    assert RateLimiter().reserve(10**6) == 0.0


def test_request_bodies_carry_the_sampling_candidates_and_seed():
    body = chat_body("m", MESSAGES, SAMPLING, n=4, seed=1 << 40)
    assert body == {"model": "m", "messages": MESSAGES, "temperature": 0.7, "top_p": 0.9, "presence_penalty": 0.1,
                    "frequency_penalty": 0.2, "max_tokens": 40, "n": 4, "seed": 1 << 40}
    assert "n" not in chat_body("m", MESSAGES, SAMPLING, n=1, seed=None)
    assert "seed" not in chat_body("m", MESSAGES, SAMPLING, n=1, seed=None)
    assert estimated_tokens(body) == len("Rewrite.A cat sat on the mat.") // 4 + 40 * 4
    judge = judge_body("m", MESSAGES)
    assert judge["max_tokens"] == 1 and judge["logprobs"] is True and judge["top_logprobs"] == 20
    assert judge["temperature"] == 0.0


def test_usage_and_logprobs_are_read_from_responses():
    payload = {"choices": [{"index": 0, "logprobs": {"content": [{"token": "yes", "top_logprobs": [
        {"token": "yes", "logprob": -0.5}, {"token": " No", "logprob": -1.0}]}]}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 1}}
    assert usage_tokens(payload) == (12, 1) and usage_tokens({"choices": []}) == (0, 0)
    assert top_logprobs(payload) == {"yes": -0.5, " No": -1.0}
    assert top_logprobs({"choices": [{"index": 0, "message": {"content": "yes"}}]}) is None


def _endpoint_config(*sets: str):
    return load_config(REPO / "configs" / "synth_partial_cpu.yaml",
                       ["synth.writer.kind=openai", "synth.writer.base_url=http://127.0.0.1:9/v1", *sets])


def test_the_key_is_read_from_the_environment_and_never_dumped(monkeypatch):
    monkeypatch.setenv("SYNCSE_TEST_KEY", "sk-very-secret")
    cfg = _endpoint_config("synth.writer.api_key_env=SYNCSE_TEST_KEY")
    key = read_api_key(cfg.synth.writer.api_key_env)
    assert key.value == "sk-very-secret"
    assert "sk-very-secret" not in dump_config(cfg) + json.dumps(cfg.model_dump(mode="json"))
    assert "sk-very-secret" not in repr(key) + str(key) + repr(EndpointClient("http://x/v1", "m", key))
    with pytest.raises(EndpointAuthError, match="SYNCSE_MISSING_KEY is not set"):
        read_api_key("SYNCSE_MISSING_KEY", environ={})


def test_writer_config_errors_and_what_the_fingerprint_keeps():
    from syncse_ray.synth.pipeline import synth_settings

    for sets, message in [(["synth.writer.kind=openai", "synth.writer.base_url=null"], "base_url is not set"),
                          (["synth.writer.kind=openai", "synth.writer.base_url=localhost:8000"], "http:// or https://"),
                          (["synth.writer.kind=grpc"], "synth.writer.kind"),
                          (["synth.writer.max_concurrency=0"], "max_concurrency")]:
        with pytest.raises(Exception, match=message):
            load_config(REPO / "configs" / "synth_partial_cpu.yaml", sets)
    base = synth_settings(_endpoint_config())
    faster = synth_settings(_endpoint_config("synth.writer.max_concurrency=64", "synth.writer.timeout_s=5",
                                             "synth.writer.base_url=http://other:8000/v1",
                                             "synth.writer.requests_per_minute=500",
                                             "synth.writer.price_per_million_input_tokens=0.15"))
    assert faster == base  # where and how fast the endpoint runs: not what it writes
    assert synth_settings(_endpoint_config("synth.writer.model=other-model")) != base
    vllm = load_config(REPO / "configs" / "synth_partial_cpu.yaml")
    assert "writer" not in synth_settings(vllm)["synth"]  # fingerprints of in-process runs unchanged
    assert synth_settings(vllm) != base


# -- the client against a fault-injecting server -------------------------------------------------------------


def _client(server: FaultServer, **kwargs) -> EndpointClient:
    kwargs.setdefault("policy", RetryPolicy(max_retries=4, base_s=0.01, max_s=0.05))
    kwargs.setdefault("timeout_s", 0.5)
    return EndpointClient(server.base_url, "test-model", **kwargs)


def test_retries_429_500_dropped_and_slow_answers_then_counts_them():
    faults = [("status", 429, {"Retry-After": "0.2"}), ("status", 500), ("drop",), ("hang", 1.0)]
    with FaultServer(faults=faults) as server:
        client = _client(server, max_concurrency=1)
        done: list[tuple[int, int]] = []
        started = __import__("time").monotonic()
        [result] = client.generate([(MESSAGES, SAMPLING, 3, 64)], on_done=lambda r, t: done.append((r, t)))
        elapsed = __import__("time").monotonic() - started
    assert result["error"] is None and len(result["texts"]) == 3
    assert result["retries"] == 4 and result["calls"] == 5 and elapsed >= 0.2  # Retry-After waited
    assert result["prompt_tokens"] > 0 and result["output_tokens"] > 0
    assert done == [(1, result["output_tokens"])]
    assert all(b["n"] == 3 and b["seed"] == 64 and b["top_p"] == 0.9 for b in server.requests)


def test_a_request_that_never_succeeds_fails_in_one_line_naming_the_endpoint_and_status():
    with FaultServer(then=("status", 503, {"Retry-After": "0"})) as server:
        client = _client(server, policy=RetryPolicy(max_retries=2, base_s=0.01), api_key=ApiKey("sk-hidden"))
        with pytest.raises(EndpointRequestFailed) as info:
            client.generate([(MESSAGES, SAMPLING, 2, 1), (MESSAGES, SAMPLING, 2, 2)])
        message = str(info.value)
        assert "\n" not in message and server.base_url + "/chat/completions" in message
        assert "HTTP 503" in message and "after 3 attempts" in message and "sk-hidden" not in message
        assert info.value.exit_code == 1
    with (FaultServer(then=("hang", 2.0)) as server,
          pytest.raises(EndpointRequestFailed, match="ReadTimeout: no answer within 0.2 s")):
        _client(server, timeout_s=0.2, policy=RetryPolicy(max_retries=1, base_s=0.01)).generate(
            [(MESSAGES, SAMPLING, 1, 1)])
    # a status not worth retrying fails at once
    with (FaultServer(then=("status", 422)) as server,
          pytest.raises(EndpointRequestFailed, match="after 1 attempt; last: HTTP 422")):
        _client(server).generate([(MESSAGES, SAMPLING, 1, 1)])


def test_k_candidates_by_k_requests_when_the_server_ignores_n():
    with FaultServer(honour_n=False) as server:
        client = _client(server)
        [first] = client.generate([(MESSAGES, SAMPLING, 3, 640)])
        assert client.n_honoured is False and len(first["texts"]) == 3 and first["calls"] == 3
        assert sorted(b["seed"] for b in server.requests) == [640, 641, 642]  # seed + i for the i-th candidate
        assert len(set(first["texts"])) == 3
        server.requests.clear()
        [second] = client.generate([(MESSAGES, SAMPLING, 3, 960)])
        assert len(second["texts"]) == 3 and all("n" not in b for b in server.requests)  # remembered
        assert sorted(b["seed"] for b in server.requests) == [960, 961, 962]


def test_a_prompt_past_the_context_is_that_requests_drop_not_a_failure():
    long_messages = [{"role": "user", "content": "this one is too long"}]
    with FaultServer() as server:
        short, long = _client(server).generate([(MESSAGES, SAMPLING, 2, 1), (long_messages, SAMPLING, 2, 2)])
    assert short["error"] is None and long["error"] == filters.TOO_LONG_FOR_CONTEXT and long["texts"] == []


def test_llm_judge_scores_from_the_endpoints_logprobs():
    with FaultServer() as server:
        scores, tokens = _client(server).judge([MESSAGES, MESSAGES])
    assert scores == [pytest.approx(1 / (1 + 2.718281828 ** -2.3))] * 2 and tokens["output_tokens"] == 2
    assert tokens["calls"] == 2 and tokens["retries"] == 0


# -- the checks before a run -------------------------------------------------------------------------------------


def _writer(base_url: str, **kw):
    return SynthConfig(writer={"kind": "openai", "base_url": base_url, "timeout_s": 2, "backoff_base_s": 0.01,
                               **kw}).writer


def test_checks_before_a_run():
    with pytest.raises(EndpointUnreachable, match="cannot reach http://127.0.0.1:.*/v1/models: ConnectError"):
        check_endpoint(_writer(free_url()), "test-model", None)
    with FaultServer(api_key="sk-right", models=("a", "test-model")) as server:
        with pytest.raises(EndpointAuthError, match="HTTP 401.*no key was sent"):
            check_endpoint(_writer(server.base_url), "test-model", None)
        with pytest.raises(EndpointAuthError, match=r"HTTP 401.*the key in \$MY_KEY was refused"):
            check_endpoint(_writer(server.base_url, api_key_env="MY_KEY"), "test-model", ApiKey("sk-wrong"))
        with pytest.raises(EndpointModelError, match=r"'gpt-9' is not served by .*\(it serves: a, test-model\)"):
            check_endpoint(_writer(server.base_url), "gpt-9", ApiKey("sk-right"))
        assert check_endpoint(_writer(server.base_url), "test-model", ApiKey("sk-right"),
                              needs_logprobs=True) == ["a", "test-model"]
        assert "Bearer sk-right" in server.authorizations
    with (FaultServer(reject_chat="this model has no chat template") as server,
          pytest.raises(EndpointRejected, match="refused a chat request.*no chat template")):
        check_endpoint(_writer(server.base_url), "test-model", None)
    with FaultServer(logprobs=False) as server:
        check_endpoint(_writer(server.base_url), "test-model", None)
        with pytest.raises(EndpointRejected, match="LLM judge needs top logprobs"):
            check_endpoint(_writer(server.base_url), "test-model", None, needs_logprobs=True)
    with FaultServer(faults=[("status", 429, {"Retry-After": "0"})]) as server:  # a busy API is waited for
        check_endpoint(_writer(server.base_url), "test-model", None)


def test_syncse_synth_stops_before_writing_on_an_unusable_endpoint(tmp_path, data_dir):
    """Exit 2 with one line, and the synth folder left free for a corrected config."""
    from syncse_ray.cli import app

    with FaultServer(models=("other",)) as server:
        for base_url, message in [(free_url(), "cannot reach"), (server.base_url, "is not served by")]:
            result = CliRunner().invoke(app, [
                "synth", str(REPO / "configs" / "synth_partial_cpu.yaml"), "--set", f"run_dir={tmp_path / 'run'}",
                "--set", f"data_dir={data_dir}", "--set", "synth.writer.kind=openai",
                "--set", f"synth.writer.base_url={base_url}", "--set", "synth.writer.model=test-model"])
            assert result.exit_code == 2 and message in result.output, result.output
            assert "Traceback" not in result.output
            assert not (tmp_path / "run" / "synth").exists()


# -- one chunk through the request step and the finishing step (no Ray: the steps are plain classes) -----------


def _chunk_spec(tmp_path: Path, base_url: str, **sets: str):
    from syncse_ray.synth.layout import Layout
    from syncse_ray.synth.pipeline import _stage_rows
    from syncse_ray.synth.steps import PhaseSpec

    cfg = load_config(REPO / "configs" / "synth_partial_cpu.yaml", [
        "synth.writer.kind=openai", f"synth.writer.base_url={base_url}", "synth.writer.model=test-model",
        "synth.writer.backoff_base_s=0.01", "synth.writer.max_retries=2", "synth.decontamination.enabled=false",
        "synth.candidates=2", *(f"{k}={v}" for k, v in sets.items())])
    phase = Layout(tmp_path / "synth").annotate
    rows = [{"id": f"p{i:09d}", "text": t} for i, t in enumerate(
        ["The river flooded the old town last spring.", "Children were playing football in the park.",
         "The river flooded the old town last spring.", "this one is too long"])]
    assert _stage_rows(phase, rows, 8, 0.9, None) == 1
    return PhaseSpec(phase, cfg.synth, cfg.seed, "", "")


def _run_chunk(spec, api_key=None):
    from syncse_ray.synth.steps import BuildRequests, EndpointGenerator, FinishChunk

    built = BuildRequests(spec)({"chunk": 0})
    generated = EndpointGenerator(spec, None, api_key)({"chunk": [built["chunk"]], "requests": [built["requests"]]})
    return json.loads(FinishChunk(spec)({k: v[0] for k, v in generated.items()})["summary"])


def test_one_chunk_through_the_endpoint_writer_and_finish(tmp_path):
    with FaultServer(faults=[("status", 500), ("status", 429, {"Retry-After": "0"})]) as server:
        spec = _chunk_spec(tmp_path, server.base_url, **{"synth.judge.method": "llm",
                                                         "synth.judge.llm_min_contradiction": "0"})
        summary = _run_chunk(spec)
    assert summary["kept"] + summary["dropped"] == 4 and summary["requests"] == 6  # 3 live rows x 2 kinds
    judged = 2 * 2 * 2  # the LLM judge: one question a candidate that passed the filters
    assert summary["retries"] == 2 and summary["http_requests"] == 6 + 2 + judged
    assert summary["prompt_tokens"] > 0 and summary["output_tokens"] > 0 and summary["judge_prompt_tokens"] > 0
    dropped = {r["id"]: r["reason"] for r in pq.read_table(spec.layout.dropped_part(0)).to_pylist()}
    assert dropped["p000000002"] == "duplicate" and dropped["p000000003"] == filters.TOO_LONG_FOR_CONTEXT
    kept = pq.read_table(spec.layout.kept_part(0)).to_pylist()
    candidates = pq.read_table(spec.layout.candidates_part(0)).to_pylist()
    assert all(c["llm"] == pytest.approx(0.9089, abs=1e-3) for c in candidates if c["reason"] is None)
    assert all(r["model"] == "test-model" and r["judge"] == "llm" for r in kept)
    assert len(candidates) == 2 * 2 * 2 + 2  # 2 candidates x 2 kinds x 2 rows; the too-long row: one error each
    assert spec.layout.done_file(0).is_file()


def test_a_chunk_whose_request_gives_up_writes_nothing(tmp_path):
    with FaultServer(then=("status", 500)) as server:
        spec = _chunk_spec(tmp_path, server.base_url, **{"synth.judge.method": "none"})
        with pytest.raises(EndpointRequestFailed, match=r"^chunk 0: synth writer: .*HTTP 500"):
            _run_chunk(spec)
    assert not spec.layout.done_file(0).exists() and not spec.layout.kept_part(0).exists()


def test_the_drivers_error_is_the_actors_one_line():
    """What Ray Data raises in the driver wraps the actor's `EndpointRequestFailed`; the driver's error is its line."""
    from syncse_ray.synth.pipeline import endpoint_failure

    line = "chunk 2: synth writer: http://h:1/v1/chat/completions (model 'm') failed after 3 attempts; last: HTTP 500"
    try:
        try:
            raise EndpointRequestFailed(line)
        except EndpointRequestFailed as inner:
            raise RuntimeError("Ray Data: a task failed") from inner
    except RuntimeError as wrapped:
        assert endpoint_failure(wrapped) == line
    ray_text = RuntimeError("ray::MapBatches(EndpointGenerator)() (pid=1)\n  File ...\n"
                            f"syncse_ray.synth.endpoint.EndpointRequestFailed: {line}")
    assert endpoint_failure(ray_text) == line
    assert endpoint_failure(RuntimeError("something else")) is None


def test_vllm_serve_command_is_the_in_process_engines_set_up_and_vllm_parses_it():
    """The server the endpoint tests and benchmark start (engine.vllm_serve_command) is built from the same engine
    kwargs as the in-process engine, and vLLM's own server parser reads every flag back to the same value."""
    from syncse_ray.config.synth import EngineConfig
    from syncse_ray.synth.engine import engine_kwargs, vllm_serve_command

    cfg = EngineConfig()
    cmd = vllm_serve_command("python", "/models/m", cfg, port=8123, served_model_name="m", on_cpu=True,
                             cpu_flags=frozenset())
    assert cmd[:3] == ["python", "-m", "vllm.entrypoints.openai.api_server"]
    assert "--enforce-eager" in cmd and "--no-enable-chunked-prefill" in cmd and "--dtype" in cmd
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    try:  # where vLLM 0.32 keeps the server's parser (older releases: vllm.entrypoints.openai.cli_args)
        from vllm.entrypoints.launchers.cli_args import make_arg_parser
    except ImportError:
        from vllm.entrypoints.openai.cli_args import make_arg_parser

    parsed = make_arg_parser(FlexibleArgumentParser()).parse_args(cmd[3:])
    for key, value in engine_kwargs("/models/m", cfg, on_cpu=True, cpu_flags=frozenset()).items():
        assert getattr(parsed, key) == value, key
    assert parsed.port == 8123 and parsed.served_model_name == ["m"]
