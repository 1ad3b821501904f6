"""Synth stage end to end: the real vLLM engine (bundled SmolLM2) in Ray Data actors on a local Ray cluster.

Each run starts its own engine actor (~35 s on 2 cores), so checks are grouped into few runs: one partial run that
is SIGKILLed and resumed feeds every partial-mode check. The engine-core kill is in the multi-node scenario
(tests/_multinode.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as pads
import pytest

from syncse_ray.config import load_config
from syncse_ray.runtime.stage_marker import ClaimError
from syncse_ray.synth import SynthError, run_synth
from syncse_ray.synth.inputs import SynthInputError
from syncse_ray.synth.layout import TRIPLET_DROPPED_SCHEMA, TRIPLET_SCHEMA

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _read(folder: Path) -> list[dict]:
    return pads.dataset(folder, format="parquet").to_table().to_pylist()


def _check_exactly_once(out: Path, expected_ids: set[str]) -> tuple[list[dict], list[dict]]:
    kept, dropped = _read(out / "data"), _read(out / "dropped")
    ids = [r["id"] for r in kept] + [r["id"] for r in dropped]
    assert len(ids) == len(set(ids)), "an id was written twice"
    assert set(ids) == expected_ids
    return kept, dropped


def _partial_config(tmp_path: Path, input_path: Path, **overrides) -> object:
    sets = [f"run_dir={tmp_path / 'run'}", f"synth.input={input_path}", "synth.limit=null",
            *(f"{k}={v}" for k, v in overrides.items())]
    return load_config(REPO / "configs" / "synth_partial_cpu.yaml", sets)


def test_partial_on_real_sentences_killed_and_resumed_exactly_once(tmp_path, data_dir, cache_dir, kill_tree):
    """`syncse synth` on real sentences (and rows each input filter drops), SIGKILLed with everything it started once
    two chunks are done, then the same command again: every input id exactly once, the verified triplets."""
    real = (data_dir / "seeds" / "wiki1m_sample.txt").read_text(encoding="utf-8").splitlines()[:20]
    giant = " ".join(["word"] * 2500)  # cannot fit the 2048-token context with its prompt
    stsb_test = [line.split("\t")[5] for line in (data_dir / "senteval/STS/STSBenchmark/sts-test.csv")
                 .read_text(encoding="utf-8").splitlines()[100:102]]
    lines = real + ["", real[0], giant, stsb_test[0].capitalize(), stsb_test[1]]
    input_path = tmp_path / "sentences.txt"
    input_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # 2 candidates a (sentence, kind) instead of the default 4: selection among several is what is checked
    settings = [f"run_dir={tmp_path / 'run'}", f"data_dir={data_dir}", f"cache_dir={cache_dir}",
                f"synth.input={input_path}", "synth.limit=null", "synth.chunk_size=5", "synth.candidates=2"]
    cmd = [str(Path(sys.executable).with_name("syncse")), "synth", str(REPO / "configs" / "synth_partial_cpu.yaml"),
           *(arg for s in settings for arg in ("--set", s))]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = tmp_path / "run" / "synth"
    done_dir = out / "work" / "annotate" / "done"

    first = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600
        while len(list(done_dir.glob("chunk-*.json"))) < 2:
            assert first.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline, "two chunks never finished"
            time.sleep(0.2)
    finally:
        kill_tree(first)
    finished_before = len(list(done_dir.glob("chunk-*.json")))
    assert not (out / "stage.json").exists()

    second = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "triplets kept" in second.stdout, second.stdout
    cfg = _partial_config(tmp_path, input_path, data_dir=data_dir, cache_dir=cache_dir,
                          **{"synth.chunk_size": 5, "synth.candidates": 2})
    result = run_synth(cfg)  # finished: read back, nothing rerun (no Ray needed)
    assert result.skipped and result.output_dir == out

    kept, dropped = _check_exactly_once(out, {f"p{i:09d}" for i in range(len(lines))})
    manifest = json.loads((out / "manifest.json").read_text())
    annotate = manifest["phases"]["annotate"]
    assert manifest["chunks_finished_before_this_run"]["annotate"] == finished_before
    assert 2 <= finished_before < annotate["chunks"], "the kill did not land part-way"
    assert annotate["kept"] == len(kept)
    assert result.requested == len(lines) == result.kept + result.dropped
    assert result.kept == len(kept) > 0
    assert pads.dataset(out / "data").schema.names == TRIPLET_SCHEMA.names
    assert pads.dataset(out / "dropped").schema.names == TRIPLET_DROPPED_SCHEMA.names
    reasons = {r["id"]: r["reason"] for r in dropped}
    assert reasons["p000000020"] == "empty_input"
    assert reasons["p000000021"] == "duplicate"
    assert reasons["p000000022"] == "too_long_for_context"
    assert reasons["p000000023"] == reasons["p000000024"] == "eval_overlap"  # STS-B test sentences
    assert sum(result.drop_reasons.values()) == result.dropped
    # Verified triplets: 2 candidates a kind, judged by MiniLM, the positive above the negative by the margins.
    judge = cfg.synth.judge
    for row in kept:
        assert judge.min_positive <= row["pos_score"] < judge.max_positive and row["candidates"] == 4
        assert row["neg_score"] <= min(row["pos_score"] - judge.margin, row["pos_score"] * judge.relative_margin)
        assert row["neg_score"] >= judge.min_negative and row["judge"] == "embedding:bundled:all-minilm-l6-v2"
    candidates = _read(out / "candidates")
    assert sum(c["selected"] for c in candidates) == 2 * len(kept)
    input_level = {"empty_input", "duplicate", "eval_overlap"}  # decided before any LLM call: no candidates
    assert {c["id"] for c in candidates} == ({r["id"] for r in kept}
                                             | {r["id"] for r in dropped if r["reason"] not in input_level})
    for row in kept:
        assert row["sent0"] in real and row["sent1"] and row["hard_neg"]
        assert len(row["positive_exemplars"]) == 5 and row["positive_instruction"].startswith("pos-")
        assert row["hard_negative_instruction"].startswith("neg-") and row["model"] == cfg.synth.model
        assert json.loads(row["positive_sampling"])["top_p"] == 0.9
    seeds = [r["positive_seed"] for r in kept] + [r["hard_negative_seed"] for r in kept]
    assert len(seeds) == len(set(seeds))

    stats = json.loads((out / "stats.json").read_text())
    # Every request counted once, including the killed run's finished chunks (their summaries were kept).
    assert annotate["requests"] == 2 * 21 and annotate["output_tokens"] > 0 and annotate["prompt_tokens"] > 0
    # 2 candidates a request; the 2 requests of the over-long row never ran and carry one error candidate each.
    assert annotate["candidates"] == 2 * (annotate["requests"] - 2) + 2
    assert stats["judge"]["agreement"] == 1.0 and stats["judge"]["tokens_per_kept"] > 0
    assert manifest["output_tokens"] == annotate["output_tokens"]
    assert 0 < stats["diversity"]["sent1"]["distinct_2"] <= 1 and stats["sampled_rows"] == result.kept
    assert json.loads((out / "stage.json").read_text())["stage"] == "synth"

    # Another config: refused, nothing touched.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ClaimError, match="different config"):
        run_synth(_partial_config(tmp_path, input_path, data_dir=data_dir, cache_dir=cache_dir, seed=1))
    with pytest.raises(ClaimError, match="different config"):
        run_synth(_partial_config(tmp_path, tmp_path / "missing.txt", data_dir=data_dir, cache_dir=cache_dir))
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_bad_input_fails_clearly_and_leaves_no_claim(tmp_path, cache_dir):
    (tmp_path / "latin1.txt").write_bytes("fine\ncaf\xe9\n".encode("latin-1"))
    (tmp_path / "s.jsonl").write_text(json.dumps({"sentence": "a"}) + "\n")
    (tmp_path / "empty.txt").write_text("")
    cases = [("missing.txt", "not found"), ("empty.txt", "empty"), ("latin1.txt", "not valid UTF-8"),
             ("s.jsonl", "no column 'text'")]
    for name, message in cases:
        cfg = _partial_config(tmp_path, tmp_path / name, cache_dir=cache_dir)
        with pytest.raises(SynthInputError, match=message):
            run_synth(cfg)
        assert not (tmp_path / "run" / "synth").exists()  # the folder stays free for the corrected config
    cfg = load_config(REPO / "configs" / "synth_partial_cpu.yaml", [f"run_dir={tmp_path}", "synth.input=null"])
    with pytest.raises(SynthError, match="synth.input is not set"):
        run_synth(cfg)
    good_input = tmp_path / "good.txt"
    good_input.write_text("A sentence.\n")
    for judge_model, message in [("bundled:no-such-model", "synth.judge.model"),
                                 (str(tmp_path), "synth.judge.model")]:
        cfg = _partial_config(tmp_path, good_input, cache_dir=cache_dir, **{"synth.judge.model": judge_model})
        with pytest.raises(SynthError, match=message):
            run_synth(cfg)
        assert not (tmp_path / "run" / "synth").exists()


def test_scratch_writes_sentences_then_triplets(tmp_path, cache_dir, ray_local):
    cfg = load_config(REPO / "configs" / "synth_scratch_cpu.yaml", [
        f"run_dir={tmp_path / 'run'}", f"cache_dir={cache_dir}", "synth.scratch.num_requests=2",
        # the two sentence requests decoded side by side (one chunk), 2 candidates a (sentence, kind): what is
        # checked is the two phases and both judges, not chunking (the partial run) or selection among many
        "synth.scratch.requests_per_chunk=2", "synth.scratch.sentences_per_request=5", "synth.candidates=2",
        "synth.sentence_sampling.max_tokens=200",
        # Both judges: the LLM's yes/no log-probabilities on the same engine, then MiniLM.
        "synth.judge.method=embedding+llm", "synth.judge.llm_min_entailment=0.0",
        "synth.judge.llm_min_contradiction=0.0"])

    result = run_synth(cfg)

    out = result.output_dir
    sentences = _read(out / "scratch" / "sentences")
    sentence_drops = _read(out / "scratch" / "dropped")
    assert sentences, "no sentences were written"
    assert all(len(s["text"].split()) <= 32 and s["genre"] and len(s["topics"]) == 6 for s in sentences)
    assert all(r["reason"] in {"sentence_too_long", "no_sentences", "eval_overlap"} for r in sentence_drops)
    assert {s["request"] for s in sentences} | {d["request"] for d in sentence_drops} == {0, 1}
    kept, _ = _check_exactly_once(out, {s["id"] for s in sentences})
    assert result.kept + result.dropped == len(sentences) == result.requested
    by_id = {s["id"]: s for s in sentences}
    for row in kept:
        assert row["mode"] == "scratch" and row["sent0"] == by_id[row["id"]]["text"]
        assert row["genre"] == by_id[row["id"]]["genre"] and len(row["topics"]) == 6
        assert row["sentence_instruction"].startswith("scratch-")
    candidates = [c for c in _read(out / "candidates") if c["reason"] is None]
    assert candidates and all(0.0 <= c["llm"] <= 1.0 and -1.0 <= c["sim"] <= 1.0 for c in candidates)
    assert all(r["pos_llm"] is not None and r["neg_score"] is not None for r in kept)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["phases"]["annotate"]["judge_prompt_tokens"] > 0 and manifest["judge_tokens"] > 0
    assert manifest["phases"]["sentences"]["requests"] == 2
    assert manifest["phases"]["sentences"]["kept"] == len(sentences)
