"""Reading partial-mode input sentences from text, JSONL, Parquet or CSV/TSV (`syncse_ray.data.readers`), streaming.

Bad input fails with a `SynthInputError` naming the file and the problem (missing, empty, not UTF-8, no such
column) before any LLM work starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from syncse_ray.data.datadir import is_inside, missing_data
from syncse_ray.data.readers import InputFileError, iter_batches

SynthInputError = InputFileError  # the synth stage's name for it


def iter_input_sentences(path: Path | None, column: str, limit: int | None = None,
                         fmt: str = "auto", data_dir: Path | None = None) -> Iterator[str]:
    """The input's sentences in file order (blank ones included: they are counted as drops, not skipped).
    ``fmt`` "auto" reads the format from the suffix; any other value names it (files such as SentEval's
    ``s1.test``, one sentence a line). A missing input inside ``data_dir`` (the seed files) is a
    `MissingDataError` that says `syncse data fetch`."""
    if path is None:
        raise SynthInputError("synth.mode is partial but synth.input is not set")
    if data_dir is not None and not Path(path).exists() and is_inside(path, data_dir):
        raise missing_data(path, data_dir, what="synth.input")
    n = 0
    try:
        for batch in iter_batches(Path(path), [column], fmt, setting="synth.input_format"):
            for value in batch[column]:
                if limit is not None and n >= limit:
                    return
                n += 1
                yield "" if value is None else str(value)
    except InputFileError as exc:
        if "has no column" in str(exc):
            raise SynthInputError(f"{exc}; set synth.text_column") from None
        raise
    if n == 0:
        raise SynthInputError(f"input file has no sentences: {path}")
