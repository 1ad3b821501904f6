"""Reading partial-mode input sentences from text, JSONL, Parquet or CSV/TSV, streaming and validated.

Bad input fails with a `SynthInputError` naming the file and the problem (missing, empty, not UTF-8, no such
column) before any LLM work starts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

TEXT_SUFFIXES = {".txt", ".text"}
JSONL_SUFFIXES = {".jsonl", ".json", ".ndjson"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
CSV_SUFFIXES = {".csv", ".tsv"}


class SynthInputError(ValueError):
    """An input file that cannot be used; the message says which and why."""


def _iter_text(path: Path) -> Iterator[str]:
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                yield raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise SynthInputError(f"input {path} is not valid UTF-8 at line {lineno}: {exc.reason}") from None


def _iter_jsonl(path: Path, column: str) -> Iterator[str]:
    for lineno, line in enumerate(_iter_text(path), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SynthInputError(f"input {path} line {lineno} is not JSON: {exc.msg}") from None
        if not isinstance(obj, dict) or column not in obj:
            keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
            raise SynthInputError(f"input {path} line {lineno} has no column {column!r} (has {keys}); "
                                  f"set synth.text_column")
        yield "" if obj[column] is None else str(obj[column])


def _iter_parquet(path: Path, column: str) -> Iterator[str]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (OSError, ValueError) as exc:  # ArrowInvalid is a ValueError
        raise SynthInputError(f"input {path} is not a readable Parquet file: {exc}") from None
    names = pf.schema_arrow.names
    if column not in names:
        raise SynthInputError(f"input {path} has no column {column!r} (has {names}); set synth.text_column")
    for batch in pf.iter_batches(columns=[column], batch_size=8192):
        for value in batch.column(0).to_pylist():
            yield "" if value is None else str(value)


def _iter_csv(path: Path, column: str) -> Iterator[str]:
    import pyarrow.csv as pcsv

    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        reader = pcsv.open_csv(path, parse_options=pcsv.ParseOptions(delimiter=delimiter),
                               convert_options=pcsv.ConvertOptions(column_types={column: "string"}))
    except (OSError, ValueError) as exc:
        raise SynthInputError(f"input {path} is not a readable CSV file: {exc}") from None
    names = reader.schema.names
    if column not in names:
        raise SynthInputError(f"input {path} has no column {column!r} (has {names}); set synth.text_column")
    try:
        for batch in reader:
            for value in batch.column(names.index(column)).to_pylist():
                yield "" if value is None else str(value)
    except (OSError, ValueError) as exc:
        raise SynthInputError(f"input {path} could not be read as CSV: {exc}") from None


def iter_input_sentences(path: Path | None, column: str, limit: int | None = None) -> Iterator[str]:
    """The input's sentences in file order (blank ones included: they are counted as drops, not skipped)."""
    if path is None:
        raise SynthInputError("synth.mode is partial but synth.input is not set")
    path = Path(path)
    if not path.is_file():
        raise SynthInputError(f"input file not found: {path}")
    if path.stat().st_size == 0:
        raise SynthInputError(f"input file is empty: {path}")
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        rows = _iter_jsonl(path, column)
    elif suffix in PARQUET_SUFFIXES:
        rows = _iter_parquet(path, column)
    elif suffix in CSV_SUFFIXES:
        rows = _iter_csv(path, column)
    elif suffix in TEXT_SUFFIXES or not suffix:
        rows = _iter_text(path)
    else:
        raise SynthInputError(f"input {path}: unknown format {suffix!r} (use .txt, .jsonl, .parquet or .csv)")
    n = 0
    for text in rows:
        if limit is not None and n >= limit:
            return
        n += 1
        yield text
    if n == 0:
        raise SynthInputError(f"input file has no sentences: {path}")
