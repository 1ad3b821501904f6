"""Training data: which files and columns to read, and turning a batch of rows into model inputs. No Ray.

Accepted inputs (a file, or a directory of them, e.g. the synthesis output `<run_dir>/synth/data/*.parquet`):

    Parquet / CSV / JSONL with sent0, sent1, hard_neg   triplets (supervised; SimCSE's NLI CSV has these three)
                              with sent0, sent1            pairs (supervised, in-batch negatives only)
                              with text (or sent0)         sentences (unsupervised SimCSE)
    .txt                      one sentence a line          sentences (unsupervised SimCSE)
    an SNLI folder (s1.<split>, s2.<split>, labels.<split>, as in <data_dir>/seeds/snli)
                              gold triplets: (premise, its first entailment, its first contradiction) for
                              every premise that has both, over all splits in the folder

Other columns (synthesis provenance) are ignored, except the judge's `pos_score` / `neg_score` when training uses
them as its false-negative reference (`train.false_negatives.reference: judge_scores`). A batch of N rows with k text columns is tokenized as one
list of k·N sentences (column after column) with dynamic padding to the longest in the batch, so one forward
pass encodes every view; unsupervised SimCSE feeds each sentence twice (k = 2, two dropout masks).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from syncse_ray.data.readers import FORMAT_SUFFIXES, InputFileError, column_names, file_format, read_columns
from syncse_ray.errors import SyncseError


class TrainDataError(SyncseError, ValueError):
    """Training data that cannot be used; the message names the path and the missing columns."""


def data_files(path: Path) -> tuple[str, list[Path]]:
    """The format and files to read at `path` (a file, or a directory of files of one format)."""
    path = Path(path)
    if path.is_file():
        try:
            return file_format(path), [path]
        except InputFileError as exc:
            raise TrainDataError(str(exc)) from None
    if not path.is_dir():
        raise TrainDataError(f"training data {path} does not exist (train.data; default <run_dir>/synth/data)")
    labels = sorted(path.glob("labels.*"))
    if labels:
        return "snli", labels
    for fmt, suffixes in FORMAT_SUFFIXES.items():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix and p.suffix.lower() in suffixes)
        if files:
            return fmt, files
    raise TrainDataError(f"training data directory {path} holds no parquet/csv/jsonl/txt files "
                         f"(nor an SNLI split: s1.<split>, s2.<split>, labels.<split>)")


def training_columns(available: list[str], objective: str, source: str) -> dict[str, str]:
    """Map the columns to read onto the names the loop uses (sent0, sent1[, hard_neg]).

    supervised: sent0 and sent1 are required, hard_neg is used when present.
    unsupervised: one sentence column, `sent0` or `text`.
    """
    cols = set(available)
    if objective == "unsupervised":
        for name in ("sent0", "text"):
            if name in cols:
                return {name: "sent0"}
        raise TrainDataError(f"{source}: unsupervised training needs a 'sent0' or 'text' column; "
                             f"found {sorted(cols)}")
    missing = [c for c in ("sent0", "sent1") if c not in cols]
    if missing:
        raise TrainDataError(f"{source}: supervised training needs columns sent0, sent1 (and optionally "
                             f"hard_neg); missing {', '.join(missing)}; found {sorted(cols)}")
    names = ["sent0", "sent1"] + (["hard_neg"] if "hard_neg" in cols else [])
    return {c: c for c in names}


def snli_triplets(labels_file: Path) -> pa.Table:
    """Gold NLI triplets from one SNLI split (s1 = premise, s2 = hypothesis, labels, line-aligned files)."""
    split = labels_file.suffix  # ".dev"
    read = lambda name: (labels_file.parent / f"{name}{split}").read_text(encoding="utf-8").splitlines()
    entailed: dict[str, str] = {}
    contradicted: dict[str, str] = {}
    for premise, hypothesis, label in zip(read("s1"), read("s2"), read("labels")):
        target = {"entailment": entailed, "contradiction": contradicted}.get(label.strip())
        if target is not None:
            target.setdefault(premise, hypothesis)
    premises = [p for p in entailed if p in contradicted]
    return pa.table({"sent0": premises, "sent1": [entailed[p] for p in premises],
                     "hard_neg": [contradicted[p] for p in premises]})


SCORE_COLUMNS = ("pos_score", "neg_score")


def _float_or_nan(v) -> float:
    try:
        return float("nan") if v is None else float(v)
    except (TypeError, ValueError):
        return float("nan")


def _read_file(path: Path, fmt: str, objective: str, scores: bool) -> pa.Table:
    """The training columns of one file (`syncse_ray.data.readers` reads it), renamed to sent0, sent1[, hard_neg], and with
    `scores` the judge's pos_score / neg_score as float64 (NaN where missing)."""
    if fmt == "snli":
        table = snli_triplets(path)
        mapping = training_columns(table.column_names, objective, str(path))
        available = table.column_names
    else:
        try:
            available = column_names(path, fmt)
        except InputFileError as exc:
            raise TrainDataError(f"cannot read training data {path}: {exc}") from None
        mapping = training_columns(available, objective, str(path))
    missing = [c for c in SCORE_COLUMNS if scores and c not in available]
    if missing or (scores and "hard_neg" not in mapping):
        raise TrainDataError(f"{path}: train.false_negatives.reference judge_scores needs triplets with the "
                             f"judge's pos_score and neg_score columns (synthesis with an embedding judge writes "
                             f"them); found {sorted(available)}")
    if fmt == "snli":
        return table.select(list(mapping)).rename_columns(list(mapping.values()))
    try:
        columns = read_columns(path, list(mapping) + (list(SCORE_COLUMNS) if scores else []), fmt)
    except InputFileError as exc:
        raise TrainDataError(f"cannot read training data {path}: {exc}") from None
    out = {new: pa.array([None if v is None else str(v) for v in columns[old]], pa.string())
           for old, new in mapping.items()}
    for name in SCORE_COLUMNS if scores else ():
        out[name] = pa.array([_float_or_nan(v) for v in columns[name]], pa.float64())
    return pa.table(out)


def read_training_table(path: Path, objective: str, seed: int, scores: bool = False) -> pa.Table:
    """Read every file at `path`, keep the training columns (renamed to sent0, sent1[, hard_neg]; with `scores`
    also pos_score, neg_score), drop rows with a missing or blank sentence, and shuffle the rows with `seed`.
    Raises TrainDataError naming missing columns (per file) or saying that no rows are left."""
    fmt, files = data_files(path)
    tables = [_read_file(file, fmt, objective, scores) for file in files]
    if len({tuple(t.column_names) for t in tables}) > 1:
        raise TrainDataError(f"{path}: the files do not all have the same columns "
                             f"({sorted({tuple(t.column_names) for t in tables})})")
    table = pa.concat_tables(tables)
    keep = np.ones(table.num_rows, dtype=bool)
    for name in [c for c in table.column_names if c not in SCORE_COLUMNS]:
        column = table.column(name).to_pylist()
        keep &= np.array([isinstance(v, str) and bool(v.strip()) for v in column], dtype=bool)
    table = table.filter(pa.array(keep))
    if table.num_rows == 0:
        texts = [c for c in table.column_names if c not in SCORE_COLUMNS]
        raise TrainDataError(f"training data {path} holds no rows with non-empty "
                             f"{', '.join(texts)} (read {len(keep)} rows from {len(files)} file(s))")
    return table.take(np.random.default_rng(seed).permutation(table.num_rows))


def views(rows: dict, objective: str) -> list[list[str]]:
    """The k text views of a batch: [sent0, sent1(, hard_neg)] or, unsupervised, [sent0, sent0]."""
    if objective == "unsupervised":
        return [list(rows["sent0"])] * 2
    return [list(rows[c]) for c in ("sent0", "sent1", "hard_neg") if c in rows]


def tokenize_views(texts: list[list[str]], tokenizer, max_seq_length: int) -> dict[str, torch.Tensor]:
    """Tokenize k views of N sentences into one [k·N, T] batch, T = the longest (≤ max_seq_length)."""
    flat = [str(s) for view in texts for s in view]
    return dict(tokenizer(flat, padding=True, truncation=True, max_length=max_seq_length, return_tensors="pt"))
