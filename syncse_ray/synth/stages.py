"""The three per-chunk steps the Ray Data pipeline runs: build requests, generate (vLLM actor), finish
(parse, filter, write the chunk's part files, then its done-summary). A row of the pipeline is one chunk.

A chunk's kept and dropped rows are written as whole files under fixed names and its summary last, so a
chunk retried after an actor death or a restart after a killed driver rewrites the same files: every input
id ends up exactly once in kept or dropped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from syncse_ray.config.synth import SamplingConfig, SynthConfig
from syncse_ray.synth import filters
from syncse_ray.synth.layout import ANNOTATE, PhaseLayout, write_json_atomic, write_table_atomic
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


@dataclass(frozen=True)
class PhaseSpec:
    """What every step of a phase needs; small and picklable (shipped to Ray workers)."""

    layout: PhaseLayout
    synth: dict[str, Any]  # SynthConfig.model_dump(mode="json")
    run_seed: int
    model_ref: str
    model_path: str

    @property
    def cfg(self) -> SynthConfig:
        return SynthConfig.model_validate(self.synth)

    def sampling(self, kind: str) -> SamplingConfig:
        cfg = self.cfg
        return {POSITIVE: cfg.positive_sampling, HARD_NEGATIVE: cfg.hard_negative_sampling,
                SENTENCES: cfg.sentence_sampling}[kind]


def _pack(spec: PhaseSpec):
    prompt_dir = spec.synth.get("prompt_dir")
    return load_prompt_pack(str(prompt_dir) if prompt_dir else None)


def build_requests(spec: PhaseSpec, chunk: int) -> list[Request]:
    """The chunk's requests: two per live input row (annotation) or its range of writing requests."""
    cfg, pack = spec.cfg, _pack(spec)
    if spec.layout.phase == ANNOTATE:
        rows = pq.read_table(spec.layout.input_chunk(chunk), columns=["row", "text", "drop_reason"]).to_pylist()
        requests = [annotation_request(pack, row=r["row"], text=r["text"], kind=kind, run_seed=spec.run_seed,
                                       num_exemplars=cfg.num_exemplars, prefix_aware=cfg.prefix_aware_requests)
                    for r in rows if r["drop_reason"] is None for kind in (POSITIVE, HARD_NEGATIVE)]
    else:
        per = cfg.scratch.requests_per_chunk
        stop = min((chunk + 1) * per, cfg.scratch.num_requests)
        requests = [sentence_request(pack, index=i, run_seed=spec.run_seed,
                                     sentences=cfg.scratch.sentences_per_request,
                                     topics=cfg.scratch.topics_per_request, genres=cfg.scratch.genres)
                    for i in range(chunk * per, stop)]
    return order_for_prefix_cache(requests) if cfg.prefix_aware_requests else requests


class BuildRequests:
    """Ray Data `map` step: chunk id -> the chunk's requests (JSON, so Arrow needs no nested schema)."""

    def __init__(self, spec: PhaseSpec):
        self.spec = spec

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        chunk = int(row["chunk"])
        requests = build_requests(self.spec, chunk)
        return {"chunk": chunk, "requests": json.dumps([r.to_json() for r in requests])}


class Generator:
    """Ray Data actor: one vLLM engine per actor, one `LLM.chat` call per chunk, a seed per request."""

    def __init__(self, spec: PhaseSpec):
        from syncse_ray.synth.engine import build_llm
        from syncse_ray.synth.reaper import start_reaper

        self.spec = spec
        cfg = spec.cfg
        self.llm = build_llm(spec.model_path, cfg.engine, seed=spec.run_seed)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = cfg.engine.max_model_len
        start_reaper()  # the engine's processes must not outlive this actor (see reaper.py)

    def _prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        return len(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)

    def generate(self, requests: list[Request]) -> list[dict[str, Any]]:
        """One result per request, in order; a prompt that cannot fit the context is a result with an error."""
        from vllm import SamplingParams

        results: list[dict[str, Any]] = [{} for _ in requests]
        live, convs, params = [], [], []
        for i, r in enumerate(requests):
            s = self.spec.sampling(r.kind)
            if self._prompt_tokens(r.messages) + s.max_tokens > self.max_model_len:
                results[i] = {"text": "", "prompt_tokens": 0, "output_tokens": 0,
                              "finish_reason": None, "error": filters.TOO_LONG_FOR_CONTEXT}
                continue
            live.append(i)
            convs.append(r.messages)
            params.append(SamplingParams(temperature=s.temperature, top_p=s.top_p,
                                         presence_penalty=s.presence_penalty,
                                         frequency_penalty=s.frequency_penalty, max_tokens=s.max_tokens,
                                         seed=r.seed))
        outputs = self.llm.chat(convs, params, use_tqdm=False) if convs else []
        for i, out in zip(live, outputs):
            completion = out.outputs[0]
            results[i] = {"text": completion.text, "prompt_tokens": len(out.prompt_token_ids or []),
                          "output_tokens": len(completion.token_ids), "finish_reason": completion.finish_reason,
                          "error": None}
        return results

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        out: dict[str, list] = {"chunk": [], "requests": [], "results": [], "generate_started_at": [],
                                "generate_seconds": []}
        for chunk, payload in zip(batch["chunk"], batch["requests"]):
            requests = [Request.from_json(d) for d in json.loads(payload)]
            started_at, start = time.time(), time.perf_counter()
            results = self.generate(requests)
            out["chunk"].append(int(chunk))
            out["requests"].append(payload)
            out["results"].append(json.dumps(results))
            out["generate_started_at"].append(started_at)
            out["generate_seconds"].append(time.perf_counter() - start)
        return out


def _sampling_json(spec: PhaseSpec, kind: str) -> str:
    return json.dumps(spec.sampling(kind).model_dump(mode="json"), sort_keys=True)


def _finish_annotation(spec: PhaseSpec, chunk: int, answers: dict[tuple[int, str], tuple[Request, dict]]):
    cfg, pack = spec.cfg, _pack(spec)
    mode = cfg.mode
    kept, dropped = [], []
    for r in pq.read_table(spec.layout.input_chunk(chunk)).to_pylist():
        base_drop = {"id": r["id"], "sent0": r["text"], "sent1": None, "hard_neg": None, "raw_positive": None,
                     "raw_hard_negative": None, "mode": mode, "model": spec.model_ref}
        if r["drop_reason"] is not None:
            dropped.append({**base_drop, "reason": r["drop_reason"]})
            continue
        (pos_req, pos_res), (neg_req, neg_res) = answers[(r["row"], POSITIVE)], answers[(r["row"], HARD_NEGATIVE)]
        error = pos_res["error"] or neg_res["error"]
        positive, hard_negative = clean_generation(pos_res["text"]), clean_generation(neg_res["text"])
        reason = error or filters.triplet_drop_reason(
            r["text"], positive, hard_negative, echo_texts=pack.echo_texts,
            min_words=cfg.filters.min_words, max_words=cfg.filters.max_words)
        if reason:
            dropped.append({**base_drop, "reason": reason, "sent1": positive, "hard_neg": hard_negative,
                            "raw_positive": pos_res["text"], "raw_hard_negative": neg_res["text"]})
            continue
        kept.append({
            "id": r["id"], "sent0": r["text"], "sent1": positive, "hard_neg": hard_negative, "mode": mode,
            "genre": r["genre"], "topics": r["topics"], "sentence_instruction": r["sentence_instruction"],
            "sentence_seed": r["sentence_seed"],
            "positive_instruction": pos_req.instruction_id, "positive_exemplars": pos_req.exemplar_ids,
            "positive_seed": pos_req.seed,
            "hard_negative_instruction": neg_req.instruction_id, "hard_negative_exemplars": neg_req.exemplar_ids,
            "hard_negative_seed": neg_req.seed, "model": spec.model_ref,
            "positive_sampling": _sampling_json(spec, POSITIVE),
            "hard_negative_sampling": _sampling_json(spec, HARD_NEGATIVE),
        })
    return kept, dropped


def _finish_sentences(spec: PhaseSpec, answers: dict[tuple[int, str], tuple[Request, dict]]):
    """Split each answer into sentences; drop over-long ones (duplicates are dropped when the sentences are
    staged for annotation, where every sentence of the run is seen)."""
    cfg = spec.cfg
    kept, dropped = [], []
    for (index, _), (req, res) in sorted(answers.items()):
        sentences = [] if res["error"] else split_sentence_list(res["text"])
        if not sentences:
            dropped.append({"id": f"s{index:08d}", "reason": res["error"] or filters.NO_SENTENCES,
                            "text": res["text"], "genre": req.genre, "request": index, "model": spec.model_ref})
            continue
        for k, text in enumerate(sentences):
            sid = f"s{index:08d}-{k:02d}"
            if filters.word_count(text) > cfg.filters.max_sentence_words:
                dropped.append({"id": sid, "reason": filters.SENTENCE_TOO_LONG, "text": text, "genre": req.genre,
                                "request": index, "model": spec.model_ref})
            else:
                kept.append({"id": sid, "text": text, "genre": req.genre, "topics": req.topics,
                             "instruction": req.instruction_id, "seed": req.seed, "request": index,
                             "model": spec.model_ref})
    return kept, dropped


def finish_chunk(spec: PhaseSpec, chunk: int, requests: list[Request], results: list[dict],
                 generate_started_at: float, generate_seconds: float) -> dict[str, Any]:
    """Parse and filter a chunk's answers, write its kept and dropped parts, then its summary (= done)."""
    answers = {(req.row, req.kind): (req, res) for req, res in zip(requests, results)}
    if spec.layout.phase == ANNOTATE:
        kept, dropped = _finish_annotation(spec, chunk, answers)
    else:
        kept, dropped = _finish_sentences(spec, answers)
    kept_schema, dropped_schema = spec.layout.schemas()
    write_table_atomic(spec.layout.kept_part(chunk), kept, kept_schema)
    write_table_atomic(spec.layout.dropped_part(chunk), dropped, dropped_schema)
    reasons: dict[str, int] = {}
    for d in dropped:
        reasons[d["reason"]] = reasons.get(d["reason"], 0) + 1
    summary = {
        "chunk": chunk, "kept": len(kept), "dropped": len(dropped), "reasons": reasons,
        "requests": len(requests), "prompt_tokens": sum(r["prompt_tokens"] for r in results),
        "output_tokens": sum(r["output_tokens"] for r in results),
        "truncated": sum(r["finish_reason"] == "length" for r in results),
        "generate_started_at": generate_started_at, "generate_seconds": generate_seconds,
        "finished_at": time.time(),
    }
    write_json_atomic(spec.layout.done_file(chunk), summary)
    return summary


class FinishChunk:
    """Ray Data `map` step: a generated chunk -> its part files and summary; returns the summary."""

    def __init__(self, spec: PhaseSpec):
        self.spec = spec

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        requests = [Request.from_json(d) for d in json.loads(row["requests"])]
        summary = finish_chunk(self.spec, int(row["chunk"]), requests, json.loads(row["results"]),
                               float(row["generate_started_at"]), float(row["generate_seconds"]))
        return {"chunk": summary["chunk"], "summary": json.dumps(summary)}
