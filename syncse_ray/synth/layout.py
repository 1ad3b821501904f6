"""Where the synth stage writes and the Parquet schemas (written atomically by `syncse_ray.io`).

    <output_dir>/data/part-NNNNN.parquet      kept triplets (sent0, sent1, hard_neg + provenance)
    <output_dir>/dropped/part-NNNNN.parquet   dropped rows with their reason
    <output_dir>/candidates/part-NNNNN.parquet every candidate the LLM wrote: filter reason, judge scores, selected
    <output_dir>/scratch/sentences|dropped/   scratch phase 1: written sentences / dropped ones
    <output_dir>/work/<phase>/inputs/         the staged input chunks of a phase (resume reads these)
    <output_dir>/work/<phase>/done/           one JSON summary per finished chunk: a chunk is done iff its
                                              summary exists; it is written after the chunk's part files
    <output_dir>/run.json                     fingerprint of the config writing this folder
    <output_dir>/manifest.json, stats.json, stage.json (when finished)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from syncse_ray.io import CARD

ANNOTATE, SENTENCES = "annotate", "sentences"
_STR, _INT, _STRS, _F = pa.string(), pa.int64(), pa.list_(pa.string()), pa.float64()
# Judge scores: cos(anchor, x) under the embedding judge; the LLM judge's P(yes). Null when that judge is off.
_SCORES = [("judge", _STR), ("pos_score", _F), ("neg_score", _F), ("pos_llm", _F), ("neg_llm", _F)]

STAGED_INPUT_SCHEMA = pa.schema([
    ("row", _INT), ("id", _STR), ("text", _STR), ("drop_reason", _STR), ("genre", _STR), ("topics", _STRS),
    ("sentence_instruction", _STR), ("sentence_seed", _INT),
])
TRIPLET_SCHEMA = pa.schema([
    ("id", _STR), ("sent0", _STR), ("sent1", _STR), ("hard_neg", _STR), ("mode", _STR),
    ("genre", _STR), ("topics", _STRS), ("sentence_instruction", _STR), ("sentence_seed", _INT),
    ("positive_instruction", _STR), ("positive_exemplars", _STRS), ("positive_seed", _INT),
    ("hard_negative_instruction", _STR), ("hard_negative_exemplars", _STRS), ("hard_negative_seed", _INT),
    ("model", _STR), ("positive_sampling", _STR), ("hard_negative_sampling", _STR), *_SCORES,
    ("candidates", _INT),
])
TRIPLET_DROPPED_SCHEMA = pa.schema([
    ("id", _STR), ("reason", _STR), ("sent0", _STR), ("sent1", _STR), ("hard_neg", _STR),
    ("raw_positive", _STR), ("raw_hard_negative", _STR), ("mode", _STR), ("model", _STR), *_SCORES,
])
CANDIDATE_SCHEMA = pa.schema([
    ("id", _STR), ("kind", _STR), ("index", _INT), ("text", _STR), ("reason", _STR), ("sim", _F), ("llm", _F),
    ("selected", pa.bool_()),
])
# Rounds 2..N (synth/next_round.py): the trained encoder's selection from round 1's candidates.
ROUND_TRIPLET_SCHEMA = pa.schema([
    ("id", _STR), ("sent0", _STR), ("sent1", _STR), ("hard_neg", _STR), ("round", _INT), ("judge", _STR),
    ("pos_score", _F), ("neg_score", _F), ("negative_source", _STR), ("same_as_round_1", pa.bool_()),
    ("round_1_judge_agrees", pa.bool_()),
])
ROUND_DROPPED_SCHEMA = pa.schema([
    ("id", _STR), ("reason", _STR), ("sent0", _STR), ("sent1", _STR), ("round", _INT), ("judge", _STR),
    ("pos_score", _F),
])
SENTENCE_SCHEMA = pa.schema([
    ("id", _STR), ("text", _STR), ("genre", _STR), ("topics", _STRS), ("instruction", _STR), ("seed", _INT),
    ("request", _INT), ("model", _STR),
])
SENTENCE_DROPPED_SCHEMA = pa.schema([
    ("id", _STR), ("reason", _STR), ("text", _STR), ("genre", _STR), ("request", _INT), ("model", _STR),
])


@dataclass
class PhaseLayout:
    """The folders of one phase (scratch sentence writing, or annotation)."""

    phase: str
    kept_dir: Path
    dropped_dir: Path
    work_dir: Path
    inputs_dir: Path = field(init=False)
    done_dir: Path = field(init=False)
    staged_marker: Path = field(init=False)

    def __post_init__(self):
        self.inputs_dir, self.done_dir = self.work_dir / "inputs", self.work_dir / "done"
        self.staged_marker = self.inputs_dir / "_staged.json"

    def input_chunk(self, chunk: int) -> Path:
        return self.inputs_dir / f"chunk-{chunk:05d}.parquet"

    def kept_part(self, chunk: int) -> Path:
        return self.kept_dir / f"part-{chunk:05d}.parquet"

    def dropped_part(self, chunk: int) -> Path:
        return self.dropped_dir / f"part-{chunk:05d}.parquet"

    def candidates_part(self, chunk: int) -> Path:
        return self.kept_dir.parent / "candidates" / f"part-{chunk:05d}.parquet"

    def done_file(self, chunk: int) -> Path:
        return self.done_dir / f"chunk-{chunk:05d}.json"

    def schemas(self) -> tuple[pa.Schema, pa.Schema]:
        if self.phase == ANNOTATE:
            return TRIPLET_SCHEMA, TRIPLET_DROPPED_SCHEMA
        return SENTENCE_SCHEMA, SENTENCE_DROPPED_SCHEMA

    def finished_chunks(self) -> set[int]:
        if not self.done_dir.is_dir():
            return set()
        return {int(p.stem.split("-")[1]) for p in self.done_dir.glob("chunk-*.json")}

    def summaries(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(self.done_dir.glob("chunk-*.json"))]

    def remove_temp_files(self) -> None:
        """Leftovers of writes a killed run did not finish (never read: their names start with '.')."""
        for folder in (self.kept_dir, self.dropped_dir, self.kept_dir.parent / "candidates", self.inputs_dir,
                       self.done_dir):
            if folder.is_dir():
                for tmp in folder.glob(".*.tmp"):
                    tmp.unlink(missing_ok=True)


class Layout:
    """The synth output folder `root` (module docstring)."""

    def __init__(self, root: Path):
        self.root = root = Path(root)
        self.annotate = PhaseLayout(ANNOTATE, root / "data", root / "dropped", root / "work" / ANNOTATE)
        self.sentences = PhaseLayout(SENTENCES, root / "scratch" / "sentences", root / "scratch" / "dropped",
                                     root / "work" / SENTENCES)
        self.run_file, self.manifest, self.stats = (root / n for n in ("run.json", "manifest.json", "stats.json"))
        self.card = root / CARD  # the dataset card (synth/card.py)


# What each column means (the dataset card, syncse_ray/synth/card.py, lists them beside the schemas above).
_JUDGE_MEANINGS = {
    "judge": "the judge that scored the candidates: `embedding:<model>`, `llm`, `embedding+llm:<model>` or `none`",
    "pos_score": "embedding judge: cosine(anchor, chosen positive); null when that judge is off",
    "neg_score": "embedding judge: cosine(anchor, chosen hard negative); null when that judge is off",
    "pos_llm": "LLM judge: P(yes) that the positive follows from the anchor; null when that judge is off",
    "neg_llm": "LLM judge: P(yes) that the hard negative contradicts the anchor; null when that judge is off",
}
COLUMN_MEANINGS: dict[str, dict[str, str]] = {
    "data": {
        "id": "stable row id: `pNNNNNNNNN` = row index in the partial input, `sNNNNNNNN-KK` = sentence KK of "
              "scratch writing request N",
        "sent0": "the anchor: an input sentence (partial) or one the LLM wrote (scratch)",
        "sent1": "the positive the LLM wrote: a paraphrase or something the anchor entails",
        "hard_neg": "the hard negative the LLM wrote: a minimal edit that contradicts the anchor",
        "mode": "`partial` (sentences given) or `scratch` (sentences written by the LLM first)",
        "genre": "scratch: the genre the sentence was written in; null for partial",
        "topics": "scratch: the topics the sentence-writing request named",
        "sentence_instruction": "scratch: id of the sentence-writing instruction",
        "sentence_seed": "scratch: seed of the sentence-writing request",
        "positive_instruction": "id of the instruction that asked for the positive (prompts: instructions.json)",
        "positive_exemplars": "ids of the few-shot exemplars shown with it (exemplars.json)",
        "positive_seed": "sampling seed of the chosen positive candidate",
        "hard_negative_instruction": "id of the instruction that asked for the hard negative",
        "hard_negative_exemplars": "ids of the few-shot exemplars shown with it",
        "hard_negative_seed": "sampling seed of the chosen hard-negative candidate",
        "model": "the generator LLM (model reference)",
        "positive_sampling": "the positive's sampling parameters (JSON)",
        "hard_negative_sampling": "the hard negative's sampling parameters (JSON)",
        **_JUDGE_MEANINGS,
        "candidates": "how many candidates (positives + hard negatives) the LLM wrote for this row",
    },
    "dropped": {
        "id": "row id", "reason": "why the row was dropped (see the counts above)",
        "sent0": "the anchor", "sent1": "the best positive candidate, if any", "hard_neg": "the best hard "
        "negative candidate, if any", "raw_positive": "the LLM's first positive answer, unparsed",
        "raw_hard_negative": "the LLM's first hard-negative answer, unparsed", "mode": "partial or scratch",
        "model": "the generator LLM", **_JUDGE_MEANINGS,
    },
    "candidates": {
        "id": "the row id the candidate belongs to", "kind": "`positive` or `hard_negative`",
        "index": "the candidate's index among the k samples of its request", "text": "the parsed candidate",
        "reason": "the exact filter that rejected it (null: passed the filters)",
        "sim": "embedding judge: cosine(anchor, candidate)", "llm": "LLM judge: P(yes)",
        "selected": "true for the positive and hard negative kept in data/",
    },
    "sentences": {
        "id": "sentence id", "text": "a sentence the LLM wrote", "genre": "the genre asked for",
        "topics": "the topics asked for", "instruction": "id of the sentence-writing instruction",
        "seed": "the request's sampling seed", "request": "the index of the writing request",
        "model": "the generator LLM",
    },
    "sentences_dropped": {
        "id": "sentence id", "reason": "why it was dropped", "text": "the sentence", "genre": "the genre asked for",
        "request": "the index of the writing request", "model": "the generator LLM",
    },
}
