"""`run_synth`: the synth stage end to end. Ray plumbing only; the per-chunk work lives in `steps`.

partial: stage the input into chunks -> Ray Data: build requests -> vLLM actors (k candidates per request,
parsed and filtered; LLM judge) -> embedding judge actors -> select and write.
scratch: the same pipeline writes sentences first (phase 1), whose output is staged and annotated (phase 2).
A restart with the same config skips finished chunks; a folder written by another config is refused.
A finished folder gets README.md, its dataset card (`syncse_ray.synth.card`).

Progress counts requests, not chunks: a chunk is one engine call of many requests, minutes long on a slow CPU.
The engine actors report the requests they finish inside a chunk (and their output tokens) to a small Ray actor,
`ProgressBoard`, which the driver reads every `POLL_S` seconds (`PhaseProgress` turns that and the finished chunks'
summaries into the `progress` calls). Ray carries the counts, so this works with engine actors on other nodes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from syncse_ray.config import Config
from syncse_ray.config.base import output_settings
from syncse_ray.errors import SyncseError, SyncseRunError
from syncse_ray.io import write_json_atomic, write_table_atomic
from syncse_ray.runtime import stage_marker
from syncse_ray.runtime.ray_env import init_ray
from syncse_ray.synth import filters
from syncse_ray.synth.card import CARD, write_dataset_card
from syncse_ray.synth.decontaminate import DecontaminationError, EvalOverlapIndex
from syncse_ray.synth.engine import engine_actor_env
from syncse_ray.synth.inputs import SynthInputError, iter_input_sentences
from syncse_ray.synth.judge import EmbeddingJudge, uses_embedding
from syncse_ray.synth.layout import ANNOTATE, STAGED_INPUT_SCHEMA, Layout, PhaseLayout
from syncse_ray.synth.prompts import check_pack, load_prompt_pack
from syncse_ray.synth.steps import (
    BuildRequests,
    EndpointGenerator,
    FinishChunk,
    Generator,
    PhaseSpec,
    chunk_request_count,
)

STAGE = "synth"
log = logging.getLogger(__name__)
# (phase, requests done, requests total, what finished since the previous call or None). Both counts are the
# phase's requests, chunks finished by an earlier run included. What finished: {requests, output_tokens} as the
# engine finishes requests inside running chunks; when a chunk is done, its summary (kept, dropped, reasons, ...)
# with `requests` and `output_tokens` less what was already passed for it. Summed over the calls, every key
# equals the sum of the chunk summaries of this run. Calls may come from a second thread, one at a time.
ProgressFn = Callable[[str, int, int, dict[str, Any] | None], None]
POLL_S = 2.0  # how often the driver reads the engine actors' counts (ProgressBoard)
COUNTED = ("requests", "output_tokens")  # what the engine actors count inside a chunk


class ProgressBoard:
    """The Ray actor (`ray.remote(ProgressBoard)`) the Generators report their running chunk's counts to
    (`steps.ChunkProgress`) and the driver reads: {chunk: (requests, output_tokens)}, the latest report for each
    chunk. Plain Python (tested without Ray); one per phase run, ended with it."""

    def __init__(self) -> None:
        self._chunks: dict[int, tuple[int, int]] = {}

    def report(self, chunk: int, requests: int, output_tokens: int) -> None:
        self._chunks[int(chunk)] = (int(requests), int(output_tokens))

    def snapshot(self) -> dict[int, tuple[int, int]]:
        return dict(self._chunks)


class PhaseProgress:
    """One phase's `progress` calls, counted in requests (`ProgressFn`). `running(snapshot)` adds the requests and
    output tokens finished inside running chunks (a ProgressBoard snapshot); `chunk_done(summary)` adds a finished
    chunk's summary less what `running` already added for it. A running chunk's counts only grow: a chunk retried
    on a new actor reports from 0 again, and the retry's summary settles its counts. Pure (no Ray); thread-safe."""

    def __init__(self, phase: str, pending: dict[int, int], finished_requests: int, progress: ProgressFn):
        self.phase, self.progress = phase, progress
        self.pending = dict(pending)  # this run's chunks not done yet -> their requests
        self.total = finished_requests + sum(pending.values())
        self.done = finished_requests
        self._shown: dict[int, list[int]] = {}  # running chunk -> COUNTED values passed on so far
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            self.progress(self.phase, self.done, self.total, None)

    def running(self, snapshot: dict[int, tuple[int, int]]) -> None:
        with self._lock:
            added = dict.fromkeys(COUNTED, 0)
            for chunk, counts in snapshot.items():
                if chunk not in self.pending:  # done (its summary counted), or not this run's
                    continue
                shown = self._shown.setdefault(chunk, [0] * len(COUNTED))
                for i, (key, value) in enumerate(zip(COUNTED, counts)):
                    if key == "requests":
                        value = min(value, self.pending[chunk])
                    if value > shown[i]:
                        added[key] += value - shown[i]
                        shown[i] = value
            if any(added.values()):
                self._emit(added)

    def chunk_done(self, summary: dict[str, Any]) -> None:
        with self._lock:
            chunk = int(summary["chunk"])
            self.pending.pop(chunk, None)
            shown = self._shown.pop(chunk, [0] * len(COUNTED))
            self._emit({**summary, **{k: summary.get(k, 0) - v for k, v in zip(COUNTED, shown)}})

    def _emit(self, added: dict[str, Any]) -> None:
        self.done += added.get("requests", 0)
        self.progress(self.phase, self.done, self.total, added)


class SynthError(SyncseError, RuntimeError):
    """The synth stage cannot run as configured; the message says why and what to do."""


@dataclass
class SynthResult:
    output_dir: Path
    data_dir: Path
    dropped_dir: Path
    kept: int
    dropped: int
    requested: int  # rows that had to end in data or dropped (partial: input rows; scratch: written sentences)
    drop_reasons: dict[str, int]
    manifest: dict[str, Any] = field(repr=False)
    stats: dict[str, Any] = field(repr=False)
    skipped: bool = False  # the output was already complete for this config


def synth_settings(cfg: Config) -> dict[str, Any]:
    """What determines the stage's output (its fingerprint): the synth section without its resource fields
    (`config.base.resource`) and the run seed. The in-process writer (`writer.kind: vllm`, the default) leaves
    `writer` out, so folders finished before the endpoint writer existed keep their fingerprint."""
    synth = output_settings(cfg.synth)
    if cfg.synth.writer.kind == "vllm":
        synth.pop("writer")
    return {"synth": synth, "seed": cfg.seed}


def _release_output_dir(layout: Layout) -> None:
    """Undo a claim whose input turned out to be unusable: only what this run staged is removed (no chunk
    had been generated yet), so a corrected config can use the folder."""
    shutil.rmtree(layout.annotate.inputs_dir, ignore_errors=True)
    layout.run_file.unlink(missing_ok=True)
    for folder in (layout.annotate.inputs_dir.parent, layout.annotate.work_dir.parent, layout.root):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _stage_rows(phase: PhaseLayout, rows: Iterable[dict[str, Any]], chunk_size: int,
                near_threshold: float, overlap: EvalOverlapIndex | None) -> int:
    """Write the phase's input as numbered chunks with dense row indices, marking empty texts, evaluation
    sentences, exact duplicates (whole input) and near duplicates (within a chunk) as dropped. Streams: memory
    is one chunk plus one 64-bit hash per distinct sentence (a Python set: ~70 MB per million). Returns the
    number of chunks; done once (marker), then reused."""
    if phase.staged_marker.is_file():
        return json.loads(phase.staged_marker.read_text())["chunks"]
    dedup = filters.Deduplicator(near_threshold)
    chunk, buffer, total = 0, [], 0
    for row in rows:
        text = row["text"].strip()
        if not filters.normalize(text):
            reason = filters.EMPTY_INPUT
        elif overlap is not None and overlap.overlaps(text):
            reason = filters.EVAL_OVERLAP
        else:
            reason = dedup.check(text)
        buffer.append({**row, "row": total, "text": text, "drop_reason": reason})
        total += 1
        if len(buffer) == chunk_size:
            write_table_atomic(phase.input_chunk(chunk), buffer, STAGED_INPUT_SCHEMA)
            chunk, buffer = chunk + 1, []
            dedup.new_window()
    if buffer:
        write_table_atomic(phase.input_chunk(chunk), buffer, STAGED_INPUT_SCHEMA)
        chunk += 1
    write_json_atomic(phase.staged_marker, {"chunks": chunk, "rows": total})
    return chunk


def _partial_rows(cfg: Config) -> Iterator[dict[str, Any]]:
    synth = cfg.synth
    for i, text in enumerate(iter_input_sentences(synth.input, synth.text_column, synth.limit, synth.input_format,
                                                  data_dir=cfg.data_dir)):
        yield {"id": f"p{i:09d}", "text": text}


def _scratch_rows(phase: PhaseLayout) -> Iterator[dict[str, Any]]:
    """Phase-1 sentences in chunk order (deterministic, so row indices and seeds are too)."""
    for part in sorted(phase.kept_dir.glob("part-*.parquet")):
        for r in pq.read_table(part).to_pylist():
            yield {"id": r["id"], "text": r["text"], "genre": r["genre"], "topics": r["topics"],
                   "sentence_instruction": r["instruction"], "sentence_seed": r["seed"]}


def _start_board() -> Any:
    """A ProgressBoard actor (no CPU reserved), or None when it cannot start: then progress is per chunk."""
    import ray

    try:
        return ray.remote(ProgressBoard).options(num_cpus=0).remote()
    except Exception as exc:  # noqa: BLE001 (progress is never worth a failed run)
        log.warning("synth progress inside chunks is off: %s: %s", type(exc).__name__, exc)
        return None


def _watch_board(board: Any, tracker: PhaseProgress, stop: threading.Event) -> None:
    """Pass the board's counts to `tracker` every POLL_S seconds until `stop`; a read that fails is skipped."""
    import ray

    while not stop.wait(POLL_S):
        try:
            snapshot = ray.get(board.snapshot.remote(), timeout=10 * POLL_S)
        except Exception as exc:  # noqa: BLE001
            log.debug("synth progress board not read: %s: %s", type(exc).__name__, exc)
            continue
        if not stop.is_set():
            tracker.running(snapshot)


def _writer_step(spec: PhaseSpec, board: Any, api_key: Any) -> tuple[type, tuple, dict[str, Any], int]:
    """The generation step for `synth.writer.kind`: (actor class, its constructor args, Ray Data resources, actor
    pool size). vllm: an engine per actor (`synth.engine`); openai: light CPU actors calling the endpoint."""
    writer, engine = spec.cfg.writer, spec.cfg.engine
    if writer.kind == "openai":
        return (EndpointGenerator, (spec, board, api_key), {"num_gpus": 0, "num_cpus": writer.num_cpus_per_actor},
                writer.num_actors)
    return (Generator, (spec, board), {"num_gpus": engine.num_gpus_per_engine, "num_cpus": engine.num_cpus_per_engine,
                                       **({"resources": engine.resources} if engine.resources else {}),
                                       **engine_actor_env(engine)}, engine.num_engines)


def endpoint_failure(exc: BaseException) -> str | None:
    """The one-line message of an `EndpointRequestFailed` raised in a request actor, found in what Ray Data raised
    in the driver (the original in its cause chain, or its line inside Ray's wrapper text); None if not one."""
    from syncse_ray.synth.endpoint import EndpointRequestFailed

    def line_of(text: str) -> str | None:
        for line in text.splitlines():
            if "synth writer:" in line or "synth judge:" in line:
                return line.split("EndpointRequestFailed:", 1)[-1].strip()
        return None

    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    found = False
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, EndpointRequestFailed):
            found = True
            message = line_of(str(e))
            if message:
                return message
        todo += [e.__cause__, e.__context__, getattr(e, "cause", None)]
    message = line_of(str(exc))
    if message and (found or "EndpointRequestFailed" in str(exc)):
        return message
    return None


class SynthEndpointError(SyncseRunError):
    """The endpoint writer gave up on a request (the run stops; a rerun resumes): one line from the actor."""


def _run_phase(spec: PhaseSpec, num_chunks: int, progress: ProgressFn | None, cache_dir: Path,
               api_key: Any = None) -> int:
    """Run every unfinished chunk of a phase through the Ray Data pipeline, reporting progress in requests as they
    finish (module docstring). Returns how many chunks were already finished (by an earlier, interrupted run)."""
    import ray

    phase = spec.layout
    phase.remove_temp_files()
    pending = sorted(set(range(num_chunks)) - phase.finished_chunks())
    tracker = None
    if progress:
        tracker = PhaseProgress(phase.phase, {c: chunk_request_count(spec, c) for c in pending},
                                sum(s.get("requests", 0) for s in phase.summaries()), progress)
        tracker.start()
    if not pending:
        return num_chunks
    judge = spec.cfg.judge
    # The caller's progress replaces Ray Data's bars (which print log lines when there is no terminal).
    ray.data.DataContext.get_current().enable_progress_bars = progress is None
    board = _start_board() if tracker else None
    writer_cls, writer_args, writer_resources, writers = _writer_step(spec, board, api_key)
    # Request building and finishing are light next to generation: up to one actor each per writer actor.
    helpers = ray.data.ActorPoolStrategy(min_size=1, max_size=writers)
    ds = (ray.data.from_items([{"chunk": c} for c in pending], override_num_blocks=len(pending))
          .map(BuildRequests, fn_constructor_args=(spec,), num_cpus=0.5, compute=helpers)
          .map_batches(writer_cls, fn_constructor_args=writer_args, batch_size=1,
                       compute=ray.data.ActorPoolStrategy(size=writers), **writer_resources))
    if phase.phase == ANNOTATE and uses_embedding(judge.method):
        ds = ds.map_batches(EmbeddingJudge, fn_constructor_args=(judge, str(cache_dir)), batch_size=1,
                            compute=ray.data.ActorPoolStrategy(size=judge.num_actors),
                            num_gpus=judge.num_gpus_per_actor, num_cpus=judge.num_cpus_per_actor)
    ds = ds.map(FinishChunk, fn_constructor_args=(spec,), num_cpus=0.5, compute=helpers)
    stop, watcher = threading.Event(), None
    if board is not None:
        watcher = threading.Thread(target=_watch_board, args=(board, tracker, stop), name="syncse-synth-progress",
                                   daemon=True)
        watcher.start()
    try:
        for row in ds.iter_rows():
            if tracker:
                tracker.chunk_done(json.loads(row["summary"]))
    except Exception as exc:
        message = endpoint_failure(exc) if spec.cfg.writer.kind == "openai" else None
        if message is None:
            raise
        raise SynthEndpointError(message) from None
    finally:
        stop.set()
        if watcher is not None:
            watcher.join(timeout=5)
        if board is not None:
            with contextlib.suppress(Exception):  # already gone with its cluster
                ray.kill(board)
    return num_chunks - len(pending)


def _totals(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    reasons: dict[str, int] = {}
    for s in summaries:
        for k, v in s["reasons"].items():
            reasons[k] = reasons.get(k, 0) + v
    keys = ("kept", "dropped", "requests", "candidates", "prompt_tokens", "output_tokens", "judge_prompt_tokens",
            "judge_output_tokens", "truncated", "generate_seconds", "retries", "http_requests")
    totals = {k: sum(s.get(k, 0) for s in summaries) for k in keys}
    totals["drop_reasons"] = dict(sorted(reasons.items()))
    candidate_reasons: dict[str, int] = {}
    for s in summaries:
        for k, v in s.get("candidate_reasons", {}).items():
            candidate_reasons[k] = candidate_reasons.get(k, 0) + v
    totals["candidate_reasons"] = dict(sorted(candidate_reasons.items()))
    totals["chunks"] = len(summaries)
    seconds = totals["generate_seconds"]
    totals["output_tokens_per_s"] = totals["output_tokens"] / seconds if seconds else 0.0
    return totals


def _sample_column(folder: Path, columns: list[str], limit: int) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {c: [] for c in columns}
    for part in sorted(folder.glob("part-*.parquet")):
        table = pq.read_table(part, columns=columns)
        for c in columns:
            out[c].extend(table.column(c).to_pylist())
        if len(out[columns[0]]) >= limit:
            break
    return {c: v[:limit] for c, v in out.items()}


def _judge_stats(layout: Layout, annotate: dict[str, Any], sample_rows: int) -> dict[str, Any]:
    """How the kept rows score under the judge that selected them, and what verification cost."""
    import numpy as np

    scores = _sample_column(layout.annotate.kept_dir, ["pos_score", "neg_score"], sample_rows)
    pairs = [(p, n) for p, n in zip(scores["pos_score"], scores["neg_score"]) if p is not None and n is not None]
    kept = annotate["kept"]
    tokens = (annotate["prompt_tokens"] + annotate["output_tokens"] + annotate["judge_prompt_tokens"]
              + annotate["judge_output_tokens"])
    out: dict[str, Any] = {
        "candidates_per_kept": annotate["candidates"] / kept if kept else None,
        "tokens_per_kept": tokens / kept if kept else None,
        "candidate_reasons": annotate["candidate_reasons"],
        "scored_rows": len(pairs),
    }
    if pairs:
        pos, neg = np.array(pairs).T
        margin = pos - neg
        out.update({"agreement": float((margin > 0).mean()), "mean_pos": float(pos.mean()),
                    "mean_neg": float(neg.mean()),
                    "margin_quantiles": {str(q): float(np.quantile(margin, q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)}})
    return out


def _stats(layout: Layout, totals: dict[str, dict[str, Any]], sample_rows: int) -> dict[str, Any]:
    sample = _sample_column(layout.annotate.kept_dir, ["sent0", "sent1", "hard_neg"], sample_rows)
    diversity = {c: {"distinct_2": filters.distinct_n(v, 2), "duplicate_rate": filters.duplicate_rate(v)}
                 for c, v in sample.items()}
    return {"sampled_rows": len(sample["sent0"]), "diversity": diversity,
            "judge": _judge_stats(layout, totals["annotate"], sample_rows),
            "drop_reasons": {phase: t["drop_reasons"] for phase, t in totals.items()},
            "kept": {phase: t["kept"] for phase, t in totals.items()},
            "dropped": {phase: t["dropped"] for phase, t in totals.items()}}


def _result(layout: Layout, manifest: dict[str, Any], stats: dict[str, Any], skipped: bool) -> SynthResult:
    final = manifest["phases"]["annotate"]
    return SynthResult(layout.root, layout.annotate.kept_dir, layout.annotate.dropped_dir, final["kept"],
                       final["dropped"], manifest["requested"], final["drop_reasons"], manifest, stats, skipped)


def _write_card(layout: Layout) -> None:
    """README.md, the dataset card (syncse_ray/synth/card.py); documentation, so it never fails the stage."""
    try:
        write_dataset_card(layout.root)
    except Exception as exc:
        log.warning("dataset card not written for %s: %s: %s", layout.root, type(exc).__name__, exc,
                    exc_info=True)


def _check_judge(cfg: Config) -> None:
    """Fail before any generation when the embedding judge's model cannot be found or read."""
    from syncse_ray.models.references import ModelError, resolve_model

    judge = cfg.synth.judge
    if not uses_embedding(judge.method):
        return
    try:
        path = resolve_model(judge.model, cfg.cache_dir)
        from transformers import AutoConfig

        AutoConfig.from_pretrained(str(path))
    except ModelError as exc:
        raise SynthError(f"synth.judge.model: {exc}") from exc
    except Exception as exc:  # transformers raises several types for a folder that is not a model
        raise SynthError(f"synth.judge.model: {judge.model!r} cannot be loaded as a model: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc


def _overlap_for_staging(cfg: Config) -> EvalOverlapIndex | None:
    d = cfg.synth.decontamination
    if not d.enabled:
        return None
    try:
        return EvalOverlapIndex.from_data_dir(cfg.data_dir, ngram=d.ngram, near_threshold=d.near_threshold)
    except DecontaminationError as exc:
        raise SynthError(str(exc)) from exc


def _check_writer(cfg: Config) -> Any:
    """Fail before any chunk is written when the endpoint writer cannot work (unreachable, key refused, model not
    served, chat or the LLM judge's logprobs refused); returns the API key for the actors (None: vllm or no key)."""
    from syncse_ray.synth.endpoint import check_endpoint, read_api_key, served_model
    from syncse_ray.synth.judge import uses_llm

    synth = cfg.synth
    if synth.writer.kind != "openai":
        return None
    api_key = read_api_key(synth.writer.api_key_env)
    check_endpoint(synth.writer, served_model(synth), api_key, needs_logprobs=uses_llm(synth.judge.method))
    return api_key


def cost_usd(writer: Any, prompt_tokens: int, output_tokens: int) -> float | None:
    """The run's cost from the writer's prices per million tokens; None when no price is set."""
    inp, out = writer.price_per_million_input_tokens, writer.price_per_million_output_tokens
    if inp is None and out is None:
        return None
    return (prompt_tokens * (inp or 0.0) + output_tokens * (out or 0.0)) / 1e6


def run_synth(cfg: Config, progress: ProgressFn | None = None) -> SynthResult:
    """Run (or resume, or skip if finished) the synth stage for `cfg`; returns counts and paths."""
    from syncse_ray.models.references import resolve_model

    synth = cfg.synth
    layout = Layout(Path(cfg.stage_dir(STAGE)))
    settings = synth_settings(cfg)
    pack = load_prompt_pack(str(synth.prompt_dir) if synth.prompt_dir else None)
    check_pack(pack, synth.num_exemplars, synth.scratch.topics_per_request, synth.scratch.genres)
    if synth.mode == "partial" and synth.input is None:
        raise SynthError("synth.mode is partial but synth.input is not set (a text/JSONL/Parquet/CSV file)")
    if stage_marker.claim(layout.root, "synth", settings, layout.run_file.name, "synth.output_dir"):
        if not (layout.root / CARD).is_file():  # finished before dataset cards existed
            _write_card(layout)
        return _result(layout, json.loads(layout.manifest.read_text()), json.loads(layout.stats.read_text()), True)

    started = time.time()
    try:
        _check_judge(cfg)
        api_key = _check_writer(cfg)
        overlap = _overlap_for_staging(cfg)
    except SyncseError:
        _release_output_dir(layout)
        raise
    endpoint = synth.writer.kind == "openai"
    model_path = None if endpoint else resolve_model(synth.model, cfg.cache_dir)

    def spec(phase: PhaseLayout) -> PhaseSpec:
        return PhaseSpec(phase, synth, cfg.seed, str(model_path or ""), str(cfg.data_dir))

    totals: dict[str, dict[str, Any]] = {}
    resumed: dict[str, int] = {}
    if synth.mode == "partial":
        try:
            num_chunks = _stage_rows(layout.annotate, _partial_rows(cfg), synth.chunk_size,
                                     synth.filters.near_duplicate_threshold, overlap)
        except SynthInputError:
            _release_output_dir(layout)
            raise
        init_ray(cfg.ray)
    else:
        init_ray(cfg.ray)
        sentences = layout.sentences
        per = synth.scratch.requests_per_chunk
        resumed["sentences"] = _run_phase(spec(sentences), -(-synth.scratch.num_requests // per), progress,
                                          cfg.cache_dir, api_key)
        totals["sentences"] = _totals(sentences.summaries())
        num_chunks = _stage_rows(layout.annotate, _scratch_rows(sentences), synth.chunk_size,
                                 synth.filters.near_duplicate_threshold, overlap)
    resumed["annotate"] = _run_phase(spec(layout.annotate), num_chunks, progress, cfg.cache_dir, api_key)
    totals["annotate"] = _totals(layout.annotate.summaries())

    staged_rows = json.loads(layout.annotate.staged_marker.read_text())["rows"]
    accounted = totals["annotate"]["kept"] + totals["annotate"]["dropped"]
    if accounted != staged_rows:
        raise SynthError(f"accounting mismatch: {staged_rows} rows staged, {accounted} kept + dropped")

    stats = _stats(layout, totals, synth.filters.stats_sample_rows)
    prompt_tokens = sum(t["prompt_tokens"] + t["judge_prompt_tokens"] for t in totals.values())
    output_tokens = sum(t["output_tokens"] + t["judge_output_tokens"] for t in totals.values())
    writer = {"kind": synth.writer.kind}
    if endpoint:
        from syncse_ray.synth.endpoint import served_model

        writer.update({"endpoint": synth.writer.base_url, "model": served_model(synth),
                       "retries": sum(t["retries"] for t in totals.values()),
                       "http_requests": sum(t["http_requests"] for t in totals.values()),
                       "cost_usd": cost_usd(synth.writer, prompt_tokens, output_tokens)})
    manifest = {
        "stage": STAGE, "mode": synth.mode, "model": spec(layout.annotate).model_ref,
        "model_path": str(model_path) if model_path else None, "writer": writer,
        "fingerprint": stage_marker.fingerprint(settings), "config": cfg.model_dump(mode="json"),
        "requested": staged_rows, "phases": totals,
        "prompt_tokens": sum(t["prompt_tokens"] for t in totals.values()),
        "output_tokens": sum(t["output_tokens"] for t in totals.values()),
        "judge_tokens": sum(t["judge_prompt_tokens"] + t["judge_output_tokens"] for t in totals.values()),
        "wall_seconds": time.time() - started,
        "chunks_finished_before_this_run": resumed,
        "paths": {"data": str(layout.annotate.kept_dir), "dropped": str(layout.annotate.dropped_dir)},
    }
    write_json_atomic(layout.stats, stats)
    write_json_atomic(layout.manifest, manifest)
    _write_card(layout)
    stage_marker.mark_done(layout.root, STAGE, settings, rows=totals["annotate"]["kept"])
    return _result(layout, manifest, stats, False)
