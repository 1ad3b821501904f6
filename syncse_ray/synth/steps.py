"""The per-chunk steps the Ray Data pipeline runs: build requests, generate (vLLM actor, `Generator`, or with
`synth.writer.kind: openai` an actor calling an OpenAI-compatible endpoint, `EndpointGenerator`: k candidates per
request, parsed and filtered, optionally scored by the LLM judge), judge (embedding actor, optional), finish
(select a triplet per anchor, write the chunk's part files, then its done-summary). A row of the pipeline is
one chunk.

A chunk's kept and dropped rows are written as whole files under fixed names and its summary last, so a
chunk retried after an actor death or a restart after a killed driver rewrites the same files: every input
id ends up exactly once in kept or dropped.

Progress inside a chunk: a chunk is one `LLM.chat` call of many requests (minutes on a slow CPU). Given a
progress board (a Ray actor, `synth.pipeline.ProgressBoard`), the Generator counts the requests the engine
finishes and their output tokens as they finish (`observe_engine_steps`, `finished_counts`, `ChunkProgress`) and
reports them to the board every `REPORT_EVERY_S` seconds; the driver reads the board. The engine still gets the
whole chunk in one call.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from syncse_ray.config.synth import SamplingConfig, SynthConfig
from syncse_ray.io import write_json_atomic, write_table_atomic
from syncse_ray.synth import filters
from syncse_ray.synth.decontaminate import EvalOverlapIndex
from syncse_ray.synth.judge import (
    LLM_TOP_LOGPROBS,
    llm_judge_messages,
    uses_embedding,
    uses_llm,
    yes_probability,
)
from syncse_ray.synth.layout import ANNOTATE, CANDIDATE_SCHEMA, PhaseLayout
from syncse_ray.synth.parsing import clean_generation, split_sentence_list
from syncse_ray.synth.prompts import (
    HARD_NEGATIVE,
    POSITIVE,
    SENTENCES,
    Request,
    annotation_request,
    load_prompt_pack,
    order_for_prefix_cache,
    sentence_request,
)
from syncse_ray.synth.selection import Candidate, select_triplet


@dataclass(frozen=True)
class PhaseSpec:
    """What every step of a phase needs; small and picklable (shipped to Ray workers)."""

    layout: PhaseLayout
    cfg: SynthConfig
    run_seed: int
    model_path: str
    data_dir: str  # evaluation sets for decontamination

    @property
    def model_ref(self) -> str:
        """The writer model as rows record it: the endpoint's model name with `writer.kind: openai`."""
        writer = self.cfg.writer
        return (writer.model or self.cfg.model) if writer.kind == "openai" else self.cfg.model

    def sampling(self, kind: str) -> SamplingConfig:
        cfg = self.cfg
        return {POSITIVE: cfg.positive_sampling, HARD_NEGATIVE: cfg.hard_negative_sampling,
                SENTENCES: cfg.sentence_sampling}[kind]

    @property
    def judge_name(self) -> str:
        judge = self.cfg.judge
        return f"{judge.method}:{judge.model}" if uses_embedding(judge.method) else judge.method


def _pack(spec: PhaseSpec):
    prompt_dir = spec.cfg.prompt_dir
    return load_prompt_pack(str(prompt_dir) if prompt_dir else None)


@lru_cache(maxsize=4)
def _overlap_index(data_dir: str, ngram: int, threshold: float) -> EvalOverlapIndex:
    return EvalOverlapIndex.from_data_dir(data_dir, ngram=ngram, near_threshold=threshold)


def overlap_index(spec: PhaseSpec) -> EvalOverlapIndex | None:
    """The evaluation-sentence index (built once per process), or None when decontamination is off."""
    d = spec.cfg.decontamination
    return _overlap_index(spec.data_dir, d.ngram, d.near_threshold) if d.enabled else None


def build_requests(spec: PhaseSpec, chunk: int) -> list[Request]:
    """The chunk's requests: two per live input row (annotation) or its range of writing requests."""
    cfg, pack = spec.cfg, _pack(spec)
    if spec.layout.phase == ANNOTATE:
        rows = pq.read_table(spec.layout.input_chunk(chunk), columns=["row", "text", "drop_reason"]).to_pylist()
        requests = [annotation_request(pack, row=r["row"], text=r["text"], kind=kind, run_seed=spec.run_seed,
                                       num_exemplars=cfg.num_exemplars, prefix_aware=cfg.prefix_aware_requests,
                                       exemplar_sets=cfg.exemplar_sets)
                    for r in rows if r["drop_reason"] is None for kind in (POSITIVE, HARD_NEGATIVE)]
    else:
        per = cfg.scratch.requests_per_chunk
        stop = min((chunk + 1) * per, cfg.scratch.num_requests)
        requests = [sentence_request(pack, index=i, run_seed=spec.run_seed,
                                     sentences=cfg.scratch.sentences_per_request,
                                     topics=cfg.scratch.topics_per_request, genres=cfg.scratch.genres)
                    for i in range(chunk * per, stop)]
    return order_for_prefix_cache(requests) if cfg.prefix_aware_requests else requests


def chunk_request_count(spec: PhaseSpec, chunk: int) -> int:
    """How many requests `build_requests(spec, chunk)` makes, without building them (the progress total)."""
    if spec.layout.phase == ANNOTATE:
        reasons = pq.read_table(spec.layout.input_chunk(chunk), columns=["drop_reason"]).column(0)
        return 2 * reasons.null_count  # two requests (positive, hard negative) per live row
    per = spec.cfg.scratch.requests_per_chunk
    return max(0, min((chunk + 1) * per, spec.cfg.scratch.num_requests) - chunk * per)


class BuildRequests:
    """Ray Data `map` step: chunk id -> the chunk's requests (JSON, so Arrow needs no nested schema)."""

    def __init__(self, spec: PhaseSpec):
        self.spec = spec

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        chunk = int(row["chunk"])
        requests = build_requests(self.spec, chunk)
        return {"chunk": chunk, "requests": json.dumps([r.to_json() for r in requests])}


def _candidate(anchor: str, kind: str, index: int, raw: str, spec: PhaseSpec, pack,
               index_: EvalOverlapIndex | None) -> dict[str, Any]:
    text = clean_generation(raw)
    f = spec.cfg.filters
    reason = filters.candidate_drop_reason(anchor, text, echo_texts=pack.echo_texts, min_words=f.min_words,
                                           max_words=f.max_words)
    if reason is None and index_ is not None and index_.overlaps(text):
        reason = filters.EVAL_OVERLAP
    return {"kind": kind, "index": index, "text": text, "raw": raw, "reason": reason, "sim": None, "llm": None}


def chunk_candidates(spec: PhaseSpec, chunk: int, requests: list[Request], results: list[dict]) -> list[dict]:
    """One entry per live input row of an annotation chunk: its anchor and its parsed, filtered candidates of
    each kind (a request that could not run gives one candidate carrying the error as its reason)."""
    pack, index_ = _pack(spec), overlap_index(spec)
    answers = {(req.row, req.kind): res for req, res in zip(requests, results)}
    entries = []
    for r in pq.read_table(spec.layout.input_chunk(chunk), columns=["row", "text", "drop_reason"]).to_pylist():
        if r["drop_reason"] is not None:
            continue
        entry: dict[str, Any] = {"row": r["row"], "anchor": r["text"]}
        for kind in (POSITIVE, HARD_NEGATIVE):
            res = answers[(r["row"], kind)]
            if res["error"]:
                entry[kind] = [{"kind": kind, "index": 0, "text": "", "raw": "", "reason": res["error"],
                                "sim": None, "llm": None}]
            else:
                entry[kind] = [_candidate(r["text"], kind, i, raw, spec, pack, index_)
                               for i, raw in enumerate(res["texts"])]
        entries.append(entry)
    return entries


ENGINE_DIED_EXIT_CODE = 75  # the actor ends itself when its engine died; Ray restarts it and retries the chunk


def engine_died(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) says the vLLM engine-core process is gone: nothing more can run on this
    engine, but a new one can."""
    from vllm.v1.engine.exceptions import EngineDeadError

    while exc is not None:
        if isinstance(exc, EngineDeadError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


REPORT_EVERY_S = 2.0  # how often a Generator sends its running chunk's counts to the progress board


def finished_counts(outputs: Iterable[Any]) -> tuple[int, int]:
    """(requests, output tokens) of the finished requests among one engine step's outputs (vLLM `RequestOutput`s;
    a request with n samples is one output holding all n, finished when its last sample is)."""
    requests = tokens = 0
    for out in outputs or ():
        if getattr(out, "finished", False):
            requests += 1
            tokens += sum(len(c.token_ids or ()) for c in getattr(out, "outputs", None) or ())
    return requests, tokens


class ChunkProgress:
    """The requests of the chunk being generated that the engine finished, and their output tokens: passed to
    `send(chunk, requests, output_tokens)` (cumulative for the chunk) at most every `every_s` seconds, and by
    `flush`. No Ray here (`send` is the caller's); a send that fails never stops generation."""

    def __init__(self, chunk: int, send: Callable[[int, int, int], object], every_s: float = REPORT_EVERY_S,
                 clock: Callable[[], float] = time.monotonic):
        self.chunk, self.requests, self.output_tokens = chunk, 0, 0
        self._send, self._every, self._clock = send, every_s, clock
        self._sent_at, self._sent = clock(), (0, 0)

    def add(self, requests: int, output_tokens: int) -> None:
        self.requests += requests
        self.output_tokens += output_tokens
        if self._clock() - self._sent_at >= self._every:
            self.flush()

    def flush(self) -> None:
        counts = (self.requests, self.output_tokens)
        if counts == self._sent:
            return
        self._sent_at, self._sent = self._clock(), counts
        with contextlib.suppress(Exception):  # progress is never worth a failed chunk
            self._send(self.chunk, *counts)


def observe_engine_steps(llm: Any, observe: Callable[[list], None]) -> bool:
    """Call `observe(outputs)` after every step of `llm`'s engine. vLLM's `LLM.chat`/`generate` add all their
    requests, then call `llm.llm_engine.step()` until none is left (vllm/entrypoints/common/offline.py,
    `_run_engine`); with the final-only output kind they set, a step returns the requests it finished. The batch
    the engine schedules is unchanged. Returns False when the engine has no `step` (then progress is per chunk).
    (`use_tqdm=<a tqdm class>`, the other hook, is told how many samples finished but not their tokens.)"""
    engine = getattr(llm, "llm_engine", None)
    step = getattr(engine, "step", None)
    if not callable(step):
        return False

    def observed_step(*args: Any, **kwargs: Any) -> Any:
        outputs = step(*args, **kwargs)
        with contextlib.suppress(Exception):  # progress is never worth a failed chunk
            observe(outputs)
        return outputs

    engine.step = observed_step
    return True


class ChunkWriter:
    """What both writers share: a Ray Data actor step that turns a chunk's requests into results (`generate`) and,
    in annotation, into candidates, scored by the LLM judge when it is on (`judge_with_llm`). `failed(exc)` sees an
    exception of a chunk first (the vLLM writer ends its actor on a dead engine); it re-raises by default."""

    spec: PhaseSpec
    chunk: int | None = None  # the chunk being generated, for messages and progress

    def generate(self, requests: list[Request]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def judge_with_llm(self, entries: list[dict]) -> dict[str, int]:
        raise NotImplementedError

    def failed(self, exc: Exception) -> None:
        raise exc

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        out: dict[str, list] = {"chunk": [], "requests": [], "results": [], "candidates": [], "judge_tokens": [],
                                "generate_started_at": [], "generate_seconds": []}
        for chunk, payload in zip(batch["chunk"], batch["requests"]):
            requests = [Request.from_json(d) for d in json.loads(payload)]
            started_at, start = time.time(), time.perf_counter()
            self.chunk = int(chunk)
            try:
                results = self.generate(requests)
                entries, judge_tokens = [], {"prompt_tokens": 0, "output_tokens": 0}
                if self.spec.layout.phase == ANNOTATE:
                    entries = chunk_candidates(self.spec, int(chunk), requests, results)
                    if uses_llm(self.spec.cfg.judge.method):
                        judge_tokens = self.judge_with_llm(entries)
            except Exception as exc:
                self.failed(exc)
                raise
            out["chunk"].append(int(chunk))
            out["requests"].append(payload)
            out["results"].append(json.dumps(results))
            out["candidates"].append(json.dumps(entries))
            out["judge_tokens"].append(json.dumps(judge_tokens))
            out["generate_started_at"].append(started_at)
            out["generate_seconds"].append(time.perf_counter() - start)
        return out


class Generator(ChunkWriter):
    """Ray Data actor: one vLLM engine per actor, one `LLM.chat` call per chunk (k samples per request, seeded),
    then the chunk's candidates, scored by the LLM judge when it is on (a second call on the same engine).
    With a progress `board` (an actor handle), the requests of the chunk's call are counted as they finish and
    reported to it (module docstring); the judge's call is not counted.

    On CPU the engine core runs in the actor's own process (`synth.engine.in_process`); where it has a process of
    its own (GPU) and that process dies (killed, OOM, crashed; `engine.watch_engine` sees it, or vLLM raises
    `EngineDeadError`), the actor ends its own process: Ray Data's actors
    restart (`max_restarts=-1`) and their unfinished calls are retried (`max_task_retries=-1`), so the chunk runs
    again on a fresh engine. A chunk's files are written only after generation, so it still lands exactly once,
    and the reaper ends the dead engine's other processes."""

    def __init__(self, spec: PhaseSpec, board: Any = None):
        from syncse_ray.synth.engine import build_llm, engine_in_process, watch_engine
        from syncse_ray.synth.reaper import start_reaper

        self.spec = spec
        cfg = spec.cfg
        self.llm = build_llm(spec.model_path, cfg.engine, seed=spec.run_seed)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = cfg.engine.max_model_len
        self.chunk: int | None = None  # the chunk being generated, for the messages below
        self.board = board
        self.progress: ChunkProgress | None = None  # set while the chunk's generation call runs
        if board is not None:
            observe_engine_steps(self.llm, self._observe)
        start_reaper()  # the engine's processes must not outlive this actor (see reaper.py)
        if not engine_in_process(cfg.engine):  # in this process, the engine's death is the actor's
            watch_engine(lambda pid: self._engine_died(f"engine process {pid} ended"))

    def _observe(self, outputs: list) -> None:
        progress = self.progress
        if progress is not None:
            progress.add(*finished_counts(outputs))

    def _report(self, chunk: int, requests: int, output_tokens: int) -> None:
        self.board.report.remote(chunk, requests, output_tokens)  # fire and forget

    def _engine_died(self, detail: object) -> None:
        print(f"[synth] the vLLM engine of this actor died (chunk {self.chunk}: {detail}); ending the actor so Ray "
              "restarts it with a new engine and retries the chunk", flush=True)
        os._exit(ENGINE_DIED_EXIT_CODE)

    def _prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        return len(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)

    def generate(self, requests: list[Request]) -> list[dict[str, Any]]:
        """One result per request, in order, with its k texts; a prompt that cannot fit the context is a result
        with an error."""
        from vllm import SamplingParams

        results: list[dict[str, Any]] = [{} for _ in requests]
        live, convs, params = [], [], []
        for i, r in enumerate(requests):
            s = self.spec.sampling(r.kind)
            if self._prompt_tokens(r.messages) + s.max_tokens > self.max_model_len:
                results[i] = {"texts": [], "prompt_tokens": 0, "output_tokens": 0, "truncated": 0,
                              "error": filters.TOO_LONG_FOR_CONTEXT}
                continue
            live.append(i)
            convs.append(r.messages)
            n = 1 if r.kind == SENTENCES else self.spec.cfg.candidates
            params.append(SamplingParams(n=n, temperature=s.temperature, top_p=s.top_p,
                                         presence_penalty=s.presence_penalty,
                                         frequency_penalty=s.frequency_penalty, max_tokens=s.max_tokens,
                                         seed=r.seed))
        if convs and self.board is not None and self.chunk is not None:
            self.progress = ChunkProgress(self.chunk, self._report)
        try:
            outputs = self.llm.chat(convs, params, use_tqdm=False) if convs else []
            if self.progress is not None:
                self.progress.flush()
        finally:
            self.progress = None
        for i, out in zip(live, outputs):
            completions = sorted(out.outputs, key=lambda c: c.index)
            results[i] = {"texts": [c.text for c in completions], "prompt_tokens": len(out.prompt_token_ids or []),
                          "output_tokens": sum(len(c.token_ids) for c in completions),
                          "truncated": sum(c.finish_reason == "length" for c in completions), "error": None}
        return results

    def judge_with_llm(self, entries: list[dict]) -> dict[str, int]:
        """Set `llm` on every candidate that passed the filters; returns the judge's token counts."""
        from vllm import SamplingParams

        todo = [(e["anchor"], c) for e in entries for kind in (POSITIVE, HARD_NEGATIVE) for c in e[kind]
                if c["reason"] is None]
        if not todo:
            return {"prompt_tokens": 0, "output_tokens": 0}
        params = SamplingParams(temperature=0.0, max_tokens=1, logprobs=LLM_TOP_LOGPROBS)
        outputs = self.llm.chat([llm_judge_messages(a, c["text"], c["kind"]) for a, c in todo], params,
                                use_tqdm=False)
        for (_, c), out in zip(todo, outputs):
            top = out.outputs[0].logprobs[0] if out.outputs[0].logprobs else {}
            c["llm"] = yes_probability({lp.decoded_token or "": lp.logprob for lp in top.values()})
        return {"prompt_tokens": sum(len(o.prompt_token_ids or []) for o in outputs),
                "output_tokens": sum(len(o.outputs[0].token_ids) for o in outputs)}

    def failed(self, exc: Exception) -> None:
        if engine_died(exc):
            self._engine_died(f"{type(exc).__name__}: {exc}")
        raise exc


class EndpointGenerator(ChunkWriter):
    """Ray Data actor for `synth.writer.kind: openai`: the chunk's requests go to an OpenAI-compatible endpoint as
    async HTTP calls (`synth.endpoint.EndpointClient`: at most `max_concurrency` in flight, rate limits, retries),
    k candidates through `n`; the LLM judge asks the same endpoint for logprobs. No vLLM, no GPU. Requests are
    counted to the progress `board` as they are answered. A request that gives up fails its chunk
    (`EndpointRequestFailed`, which names the chunk): nothing of that chunk is written, finished chunks stay."""

    def __init__(self, spec: PhaseSpec, board: Any = None, api_key: Any = None):
        from syncse_ray.synth.endpoint import EndpointClient

        self.spec = spec
        self.client = EndpointClient.from_config(spec.cfg, api_key)
        self.board = board
        self.chunk: int | None = None

    def _report(self, chunk: int, requests: int, output_tokens: int) -> None:
        self.board.report.remote(chunk, requests, output_tokens)  # fire and forget

    def generate(self, requests: list[Request]) -> list[dict[str, Any]]:
        jobs = [(r.messages, self.spec.sampling(r.kind), 1 if r.kind == SENTENCES else self.spec.cfg.candidates,
                 r.seed) for r in requests]
        progress = None
        if jobs and self.board is not None and self.chunk is not None:
            progress = ChunkProgress(self.chunk, self._report)
        results = self.client.generate(jobs, on_done=progress.add if progress else None)
        if progress is not None:
            progress.flush()
        return results

    def judge_with_llm(self, entries: list[dict]) -> dict[str, int]:
        todo = [(e["anchor"], c) for e in entries for kind in (POSITIVE, HARD_NEGATIVE) for c in e[kind]
                if c["reason"] is None]
        scores, tokens = self.client.judge([llm_judge_messages(a, c["text"], c["kind"]) for a, c in todo])
        for (_, c), score in zip(todo, scores):
            c["llm"] = score
        return tokens

    def failed(self, exc: Exception) -> None:
        from syncse_ray.synth.endpoint import EndpointRequestFailed

        if isinstance(exc, EndpointRequestFailed):
            raise EndpointRequestFailed(f"chunk {self.chunk}: {exc}") from None
        raise exc


def _sampling_json(spec: PhaseSpec, kind: str) -> str:
    return json.dumps(spec.sampling(kind).model_dump(mode="json"), sort_keys=True)


def _candidate_rows(row_id: str, entry: dict, chosen: set[tuple[str, int]]) -> list[dict[str, Any]]:
    return [{"id": row_id, "kind": c["kind"], "index": c["index"], "text": c["text"], "reason": c["reason"],
             "sim": c["sim"], "llm": c["llm"], "selected": (c["kind"], c["index"]) in chosen}
            for kind in (POSITIVE, HARD_NEGATIVE) for c in entry[kind]]


def _finish_annotation(spec: PhaseSpec, chunk: int, requests: list[Request], entries: list[dict]):
    cfg = spec.cfg
    mode, thresholds = cfg.mode, cfg.judge
    by_row = {e["row"]: e for e in entries}
    reqs = {(req.row, req.kind): req for req in requests}
    kept, dropped, candidates = [], [], []
    for r in pq.read_table(spec.layout.input_chunk(chunk)).to_pylist():
        base = {"id": r["id"], "sent0": r["text"], "mode": mode, "model": spec.model_ref, "judge": spec.judge_name}
        if r["drop_reason"] is not None:
            dropped.append({**base, "reason": r["drop_reason"]})
            continue
        entry = by_row[r["row"]]
        pick = select_triplet([Candidate(**c) for c in _public(entry[POSITIVE])],
                              [Candidate(**c) for c in _public(entry[HARD_NEGATIVE])], thresholds)
        chosen = set() if pick.reason else {(pick.positive.kind, pick.positive.index),
                                            (pick.negative.kind, pick.negative.index)}
        candidates.extend(_candidate_rows(r["id"], entry, chosen))
        pos, neg = pick.positive, pick.negative
        scores = {"pos_score": pos and pos.sim, "neg_score": neg and neg.sim,
                  "pos_llm": pos and pos.llm, "neg_llm": neg and neg.llm}
        if pick.reason:
            first_pos, first_neg = entry[POSITIVE][0], entry[HARD_NEGATIVE][0]
            dropped.append({**base, **scores, "reason": pick.reason,
                            "sent1": pos.text if pos else first_pos["text"],
                            "hard_neg": neg.text if neg else first_neg["text"],
                            "raw_positive": first_pos["raw"], "raw_hard_negative": first_neg["raw"]})
            continue
        pos_req, neg_req = reqs[(r["row"], POSITIVE)], reqs[(r["row"], HARD_NEGATIVE)]
        kept.append({
            **base, **scores, "sent1": pos.text, "hard_neg": neg.text,
            "genre": r["genre"], "topics": r["topics"], "sentence_instruction": r["sentence_instruction"],
            "sentence_seed": r["sentence_seed"],
            "positive_instruction": pos_req.instruction_id, "positive_exemplars": pos_req.exemplar_ids,
            "positive_seed": pos_req.seed + pos.index,
            "hard_negative_instruction": neg_req.instruction_id, "hard_negative_exemplars": neg_req.exemplar_ids,
            "hard_negative_seed": neg_req.seed + neg.index,
            "positive_sampling": _sampling_json(spec, POSITIVE),
            "hard_negative_sampling": _sampling_json(spec, HARD_NEGATIVE),
            "candidates": len(entry[POSITIVE]) + len(entry[HARD_NEGATIVE]),
        })
    return kept, dropped, candidates


def _public(cands: list[dict]) -> list[dict]:
    return [{k: v for k, v in c.items() if k != "raw"} for c in cands]


def _finish_sentences(spec: PhaseSpec, answers: dict[tuple[int, str], tuple[Request, dict]]):
    """Split each answer into sentences; drop over-long ones and evaluation sentences (duplicates are dropped
    when the sentences are staged for annotation, where every sentence of the run is seen)."""
    cfg, index_ = spec.cfg, overlap_index(spec)
    kept, dropped = [], []
    for (index, _), (req, res) in sorted(answers.items()):
        sentences = [] if res["error"] else split_sentence_list(res["texts"][0])
        if not sentences:
            dropped.append({"id": f"s{index:08d}", "reason": res["error"] or filters.NO_SENTENCES,
                            "text": (res["texts"] or [""])[0], "genre": req.genre, "request": index,
                            "model": spec.model_ref})
            continue
        for k, text in enumerate(sentences):
            sid = f"s{index:08d}-{k:02d}"
            reason = None
            if filters.word_count(text) > cfg.filters.max_sentence_words:
                reason = filters.SENTENCE_TOO_LONG
            elif index_ is not None and index_.overlaps(text):
                reason = filters.EVAL_OVERLAP
            if reason:
                dropped.append({"id": sid, "reason": reason, "text": text, "genre": req.genre,
                                "request": index, "model": spec.model_ref})
            else:
                kept.append({"id": sid, "text": text, "genre": req.genre, "topics": req.topics,
                             "instruction": req.instruction_id, "seed": req.seed, "request": index,
                             "model": spec.model_ref})
    return kept, dropped


def finish_chunk(spec: PhaseSpec, chunk: int, requests: list[Request], results: list[dict], entries: list[dict],
                 judge_tokens: dict[str, int], generate_started_at: float,
                 generate_seconds: float) -> dict[str, Any]:
    """Select, write the chunk's kept, dropped (and candidate) parts, then its summary (= done)."""
    candidates: list[dict] = []
    if spec.layout.phase == ANNOTATE:
        kept, dropped, candidates = _finish_annotation(spec, chunk, requests, entries)
        write_table_atomic(spec.layout.candidates_part(chunk), candidates, CANDIDATE_SCHEMA)
    else:
        answers = {(req.row, req.kind): (req, res) for req, res in zip(requests, results)}
        kept, dropped = _finish_sentences(spec, answers)
    kept_schema, dropped_schema = spec.layout.schemas()
    write_table_atomic(spec.layout.kept_part(chunk), kept, kept_schema)
    write_table_atomic(spec.layout.dropped_part(chunk), dropped, dropped_schema)
    candidate_reasons: dict[str, int] = {}
    for c in candidates:
        key = "selected" if c["selected"] else (c["reason"] or "not_selected")
        candidate_reasons[key] = candidate_reasons.get(key, 0) + 1
    summary = {
        "chunk": chunk, "kept": len(kept), "dropped": len(dropped), "reasons": dict(Counter(d["reason"]
                                                                                          for d in dropped)),
        "requests": len(requests), "candidates": len(candidates), "candidate_reasons": candidate_reasons,
        "prompt_tokens": sum(r["prompt_tokens"] for r in results),
        "output_tokens": sum(r["output_tokens"] for r in results),
        "judge_prompt_tokens": judge_tokens["prompt_tokens"], "judge_output_tokens": judge_tokens["output_tokens"],
        "truncated": sum(r["truncated"] for r in results),
        # the endpoint writer's retries and HTTP calls (the vLLM writer has neither)
        "retries": sum(r.get("retries", 0) for r in results) + judge_tokens.get("retries", 0),
        "http_requests": sum(r.get("calls", 0) for r in results) + judge_tokens.get("calls", 0),
        "generate_started_at": generate_started_at, "generate_seconds": generate_seconds,
        "finished_at": time.time(),
    }
    write_json_atomic(spec.layout.done_file(chunk), summary)
    return summary


class FinishChunk:
    """Ray Data `map` step: a generated (and judged) chunk -> its part files and summary; returns the summary."""

    def __init__(self, spec: PhaseSpec):
        self.spec = spec

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        requests = [Request.from_json(d) for d in json.loads(row["requests"])]
        summary = finish_chunk(self.spec, int(row["chunk"]), requests, json.loads(row["results"]),
                               json.loads(row["candidates"]), json.loads(row["judge_tokens"]),
                               float(row["generate_started_at"]), float(row["generate_seconds"]))
        return {"chunk": summary["chunk"], "summary": json.dumps(summary)}
