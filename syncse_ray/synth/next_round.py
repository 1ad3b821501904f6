"""Rounds 2..N: the encoder trained in round r-1 selects round r's triplets from round 1's candidates and mines
hard negatives for the rows whose LLM negatives all fail (the rules: reselect.py, pure). Ray Data at the edges:
encoding the round's sentence pool is an actor-pool stage (GPUs by `pipeline.next_round`), mining and selection a
map_batches stage over the anchors, with the vectors and the FAISS index shared through the object store.

    <run_dir>/round_<r>/select/data/part-00000.parquet     sent0, sent1, hard_neg, scores, negative_source
    <run_dir>/round_<r>/select/dropped/part-00000.parquet  rows without a triplet this round, and why
    <run_dir>/round_<r>/select/stats.json                  counts, reasons, the carried-over thresholds
    <run_dir>/round_<r>/select/stage.json                  finished (settings fingerprint)
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from syncse_ray.config import Config
from syncse_ray.config.base import output_settings
from syncse_ray.config.synth import JudgeConfig
from syncse_ray.errors import SyncseError
from syncse_ray.io import write_json_atomic, write_table_atomic
from syncse_ray.models.vectors import unit_rows
from syncse_ray.runtime import stage_marker
from syncse_ray.synth.layout import ROUND_DROPPED_SCHEMA, ROUND_TRIPLET_SCHEMA
from syncse_ray.synth.prompts import HARD_NEGATIVE, POSITIVE
from syncse_ray.synth.reselect import Mining, RoundPick, round_stats, select_round, transfer_thresholds
from syncse_ray.synth.selection import Candidate

log = logging.getLogger(__name__)
STAGE = "select"
CLAIM_FILE = "select_run.json"


class SelectError(SyncseError, RuntimeError):
    """A later round that cannot select: round 1's synthesis is missing or has no judged candidates."""


@dataclass
class SelectResult:
    out_dir: Path
    data_dir: Path
    stats: dict[str, Any]
    skipped: bool


def _round_1(synth_dir: Path) -> tuple[dict[str, str], dict[str, list[dict[str, Any]]]]:
    """Round 1's anchors {id: text} and candidates {id: [candidate row, ...]} (rows that reached the LLM)."""
    anchors: dict[str, str] = {}
    for folder in ("data", "dropped"):
        if (synth_dir / folder).is_dir() and any((synth_dir / folder).glob("*.parquet")):
            table = pq.read_table(synth_dir / folder, columns=["id", "sent0"])
            anchors.update(zip(table.column("id").to_pylist(), table.column("sent0").to_pylist()))
    if not (synth_dir / "candidates").is_dir():
        raise SelectError(f"{synth_dir} has no candidates/: later rounds re-judge round 1's candidates")
    by_id: dict[str, list[dict[str, Any]]] = {}
    for row in pq.read_table(synth_dir / "candidates").to_pylist():
        by_id.setdefault(row["id"], []).append(row)
    return {i: anchors[i] for i in by_id if i in anchors}, by_id


def _encode(texts: list[str], encoder: JudgeConfig, cfg: Config) -> np.ndarray:
    """Unit vectors of `texts` from a Ray Data actor pool (row order restored from the `i` column)."""
    import ray

    from syncse_ray.synth.judge import TextEncoder

    nr = cfg.pipeline.next_round
    ds = ray.data.from_items([{"i": i, "text": t} for i, t in enumerate(texts)]).map_batches(
        TextEncoder, fn_constructor_args=(encoder, str(cfg.cache_dir)), batch_size=nr.batch_size,
        compute=ray.data.ActorPoolStrategy(size=nr.num_actors), num_gpus=nr.num_gpus_per_actor,
        num_cpus=nr.num_cpus_per_actor)
    vectors: np.ndarray | None = None
    for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
        vecs = np.stack(batch["vec"]) if batch["vec"].dtype == object else batch["vec"]
        if vectors is None:
            vectors = np.zeros((len(texts), vecs.shape[1]), dtype=np.float32)
        vectors[batch["i"]] = vecs
    assert vectors is not None
    return unit_rows(vectors)


class RoundSelector:
    """Ray Data actor: for a batch of anchors, the FAISS neighbours (mining) and `reselect.select_round`."""

    def __init__(self, vectors, texts: list[str], plan: dict[str, Any]):
        import ray

        # Ray Data passes constructor arguments as given: the vectors arrive as an object-store reference
        self.vectors = ray.get(vectors) if isinstance(vectors, ray.ObjectRef) else vectors
        self.texts, self.plan = texts, plan
        self.select_judge = JudgeConfig.model_validate(plan["select_judge"])
        self.mine_judge = JudgeConfig.model_validate(plan["mine_judge"])
        self.index = None
        if plan["mine"] != "off":
            import faiss

            self.index = faiss.IndexFlatIP(self.vectors.shape[1])
            self.index.add(self.vectors)

    def _neighbours(self, rows: list[dict[str, Any]]) -> list[list[tuple[str, float]]]:
        if self.index is None:
            return [[] for _ in rows]
        k = min(len(self.texts), self.plan["top_k"] + 1 + max(len(r["candidates"]) for r in rows))
        scores, ids = self.index.search(self.vectors[[r["a"] for r in rows]], k)
        return [[(self.texts[j], float(s)) for j, s in zip(row_ids, row_scores) if j >= 0]
                for row_ids, row_scores in zip(ids, scores)]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        rows = [json.loads(r) for r in batch["row"]]
        trained = self.plan["judge"] == "trained"
        out = []
        for r, neighbours in zip(rows, self._neighbours(rows)):
            cands = {POSITIVE: [], HARD_NEGATIVE: []}
            for c in r["candidates"]:
                sim = c["new_sim"] if trained else c["sim"]
                cands[c["kind"]].append(Candidate(c["kind"], c["index"], c["text"], c["reason"], sim, c["llm"]))
            mining = None
            if self.index is not None:
                mining = Mining(neighbours, self.mine_judge, top_k=self.plan["top_k"],
                                positive_sims={c["index"]: c["new_sim"] for c in r["candidates"]
                                               if c["kind"] == POSITIVE and c["new_sim"] is not None})
            pick = select_round(r["anchor"], cands[POSITIVE], cands[HARD_NEGATIVE], self.select_judge, mining)
            out.append(json.dumps(_result_row(r, pick, self.plan)))
        return {"result": out}


def _result_row(r: dict[str, Any], pick: RoundPick, plan: dict[str, Any]) -> dict[str, Any]:
    s = pick.selection
    pos, neg = s.positive, s.negative
    row = {"id": r["id"], "sent0": r["anchor"], "sent1": pos.text if pos else None, "round": plan["round"],
           "judge": plan["judge_name"], "pos_score": pos.sim if pos else None, "reason": s.reason}
    if s.reason is None:
        # round 1's judge on this round's choice: does it too score the positive above the negative?
        first = {(c["kind"], c["index"]): c["sim"] for c in r["candidates"]}
        pos_1, neg_1 = first.get((POSITIVE, pos.index)), None if pick.mined else first.get((HARD_NEGATIVE, neg.index))
        row.update(hard_neg=neg.text, neg_score=neg.sim, negative_source="mined" if pick.mined else "llm",
                   same_as_round_1=(pos.index, neg.index) == tuple(r["round_1"]) and not pick.mined,
                   round_1_judge_agrees=None if pos_1 is None or neg_1 is None else pos_1 > neg_1)
    return row


def _pairs(anchors: dict[str, str], by_id: dict[str, list[dict[str, Any]]], row: dict[str, int]):
    """(anchor index, candidate index, round-1 score) of every candidate that passed the filters."""
    a, c, ref = [], [], []
    for i, cands in by_id.items():
        for cand in cands:
            if cand["reason"] is None:
                a.append(row[anchors[i]])
                c.append(row[cand["text"]])
                ref.append(np.nan if cand["sim"] is None else cand["sim"])
    return np.array(a, dtype=np.int64), np.array(c, dtype=np.int64), np.array(ref, dtype=np.float64)


def run_select(cfg: Config, round_index: int, encoder_model: str, encoder_version: str | None,
               out_dir: Path) -> SelectResult:
    """Select round `round_index`'s triplets with the encoder at `encoder_model` (round r-1's best) into
    `out_dir`; skipped when finished with the same settings."""
    from syncse_ray.runtime.ray_env import init_ray

    nr = cfg.pipeline.next_round
    synth_dir = cfg.stage_dir("synth")
    synth_marker = stage_marker.read_marker(synth_dir)
    if synth_marker is None:
        raise SelectError(f"round {round_index} needs round 1's finished synthesis in {synth_dir}")
    settings = {"round": round_index, "synth": synth_marker["fingerprint"], "encoder": encoder_model,
                "encoder_version": encoder_version, "judge": nr.judge, "mine": nr.mine, "top_k": nr.top_k,
                "thresholds": output_settings(cfg.synth.judge)}
    out_dir = Path(out_dir)
    if stage_marker.claim(out_dir, STAGE, settings, CLAIM_FILE, "run_dir"):
        return SelectResult(out_dir, out_dir / "data", json.loads((out_dir / "stats.json").read_text()), True)

    started = time.time()
    anchors, by_id = _round_1(synth_dir)
    if not anchors:
        raise SelectError(f"{synth_dir} holds no candidates to judge again (round 1 wrote none)")
    texts = list(dict.fromkeys([*anchors.values(),
                                *(c["text"] for cands in by_id.values() for c in cands if c["reason"] is None)]))
    row = {t: i for i, t in enumerate(texts)}
    init_ray(cfg.ray)
    encoder = cfg.synth.judge.model_copy(update={"model": encoder_model, "pooler": None,
                                                 "batch_size": nr.batch_size,
                                                 "num_gpus_per_actor": nr.num_gpus_per_actor})
    vectors = _encode(texts, encoder, cfg)
    log.info("round %d: encoded %d sentences in %.0f s", round_index, len(texts), time.time() - started)

    a_idx, c_idx, reference = _pairs(anchors, by_id, row)
    new = np.einsum("ij,ij->i", vectors[a_idx], vectors[c_idx])
    scored = ~np.isnan(reference)
    if not scored.any():
        raise SelectError(f"round 1's candidates in {synth_dir} carry no embedding-judge scores to carry the "
                          "thresholds over with")
    moved = transfer_thresholds(reference[scored], new[scored], cfg.synth.judge)
    new_sims = iter(new.tolist())
    rows = []
    for i, cands in by_id.items():
        chosen = {c["kind"]: c["index"] for c in cands if c["selected"]}
        for c in cands:
            c["new_sim"] = next(new_sims) if c["reason"] is None else None
        rows.append({"row": json.dumps({"id": i, "anchor": anchors[i], "a": row[anchors[i]], "candidates": cands,
                                        "round_1": [chosen.get(POSITIVE), chosen.get(HARD_NEGATIVE)]})})
    plan = {"round": round_index, "judge": nr.judge, "mine": nr.mine, "top_k": nr.top_k,
            "judge_name": encoder_model if nr.judge == "trained" else cfg.synth.judge.model,
            "select_judge": (moved if nr.judge == "trained" else cfg.synth.judge).model_dump(mode="json"),
            "mine_judge": moved.model_dump(mode="json")}
    import ray

    results = ray.data.from_items(rows).map_batches(
        RoundSelector, fn_constructor_args=(ray.put(vectors), texts, plan), batch_size=256,
        compute=ray.data.ActorPoolStrategy(size=nr.num_actors), num_cpus=nr.num_cpus_per_actor).take_all()
    picked = sorted((json.loads(r["result"]) for r in results), key=lambda r: r["id"])
    kept = [r for r in picked if r["reason"] is None]
    write_table_atomic(out_dir / "data" / "part-00000.parquet", kept, ROUND_TRIPLET_SCHEMA)
    write_table_atomic(out_dir / "dropped" / "part-00000.parquet", [r for r in picked if r["reason"]],
                       ROUND_DROPPED_SCHEMA)
    stats = {"round": round_index, "encoder": encoder_model, "judge": nr.judge, "mine": nr.mine,
             "encoded_sentences": len(texts), "seconds": time.time() - started,
             "thresholds": {k: getattr(moved, k) for k in ("min_positive", "max_positive", "min_negative",
                                                            "margin", "relative_margin")},
             **round_stats(picked)}
    write_json_atomic(out_dir / "stats.json", stats)
    stage_marker.mark_done(out_dir, STAGE, settings)
    return SelectResult(out_dir, out_dir / "data", stats, False)

