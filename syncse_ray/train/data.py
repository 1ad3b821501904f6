"""Training data: which files and columns to read, and turning a batch of rows into model inputs. No Ray.

Accepted inputs (a file, or a directory of them, e.g. the synthesis output `<run_dir>/synth/data/*.parquet`):

    Parquet / CSV / JSONL with sent0, sent1, hard_neg   triplets (supervised; SimCSE's NLI CSV has these three)
                              with sent0, sent1            pairs (supervised, in-batch negatives only)
                              with text (or sent0)         sentences (unsupervised SimCSE)
    .txt                      one sentence a line          sentences (unsupervised SimCSE)

Other columns (synthesis provenance) are ignored. A batch of N rows with k text columns is tokenized as one
list of k·N sentences (column after column) with dynamic padding to the longest in the batch, so one forward
pass encodes every view; unsupervised SimCSE feeds each sentence twice (k = 2, two dropout masks).
"""

from __future__ import annotations

from pathlib import Path

import torch

SUFFIXES = {".parquet": "parquet", ".csv": "csv", ".jsonl": "json", ".json": "json", ".txt": "text"}


class TrainDataError(ValueError):
    """Training data that cannot be used; the message names the path and the missing columns."""


def data_files(path: Path) -> tuple[str, list[Path]]:
    """The format and files to read at `path` (a file, or a directory of files of one format)."""
    path = Path(path)
    if path.is_file():
        if path.suffix not in SUFFIXES:
            raise TrainDataError(f"{path}: unsupported file type {path.suffix!r}; use one of {sorted(SUFFIXES)}")
        return SUFFIXES[path.suffix], [path]
    if not path.is_dir():
        raise TrainDataError(f"training data {path} does not exist (train.data; default <run_dir>/synth/data)")
    for suffix, fmt in SUFFIXES.items():
        files = sorted(p for p in path.glob(f"*{suffix}") if p.is_file())
        if files:
            return fmt, files
    raise TrainDataError(f"training data directory {path} holds no {'/'.join(sorted(SUFFIXES))} files")


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


def views(rows: dict, objective: str) -> list[list[str]]:
    """The k text views of a batch: [sent0, sent1(, hard_neg)] or, unsupervised, [sent0, sent0]."""
    if objective == "unsupervised":
        return [list(rows["sent0"])] * 2
    return [list(rows[c]) for c in ("sent0", "sent1", "hard_neg") if c in rows]


def tokenize_views(texts: list[list[str]], tokenizer, max_seq_length: int) -> dict[str, torch.Tensor]:
    """Tokenize k views of N sentences into one [k·N, T] batch, T = the longest (≤ max_seq_length)."""
    flat = [str(s) for view in texts for s in view]
    return dict(tokenizer(flat, padding=True, truncation=True, max_length=max_seq_length, return_tensors="pt"))


def mask_tokens(input_ids: torch.Tensor, tokenizer, probability: float = 0.15,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking for the MLM auxiliary loss: choose `probability` of the non-special tokens; of those 80%
    become [MASK], 10% a random token, 10% stay. Returns (masked ids, labels with -100 where not chosen)."""
    labels = input_ids.clone()
    special = torch.tensor([tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=True)
                            for ids in input_ids.tolist()], dtype=torch.bool)
    chosen = (torch.rand(input_ids.shape, generator=generator) < probability) & ~special
    labels[~chosen] = -100
    masked = input_ids.clone()
    to_mask = chosen & (torch.rand(input_ids.shape, generator=generator) < 0.8)
    masked[to_mask] = tokenizer.mask_token_id
    to_random = chosen & ~to_mask & (torch.rand(input_ids.shape, generator=generator) < 0.5)
    masked[to_random] = torch.randint(len(tokenizer), input_ids.shape, generator=generator)[to_random]
    return masked, labels
