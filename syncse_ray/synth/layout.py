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
