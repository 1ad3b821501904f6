"""Files in, the same way in every stage: one reader per input format.

Readers stream text (one row a line), JSONL, Parquet and CSV/TSV files in batches of columns, and fail with an
`InputFileError` that names the file and the problem (missing, empty, not UTF-8, not JSON, no such column).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from syncse_ray.errors import SyncseError

FORMATS = ("auto", "text", "jsonl", "parquet", "csv")
FORMAT_SUFFIXES = {"parquet": (".parquet", ".pq"), "csv": (".csv", ".tsv"), "jsonl": (".jsonl", ".json", ".ndjson"),
                   "text": (".txt", ".text", "")}
BATCH_ROWS = 8192


class InputFileError(SyncseError, ValueError):
    """An input file that cannot be used; the message says which and why."""


def file_format(path: Path, fmt: str = "auto", setting: str = "the format") -> str:
    """`fmt`, or for "auto" the format its suffix names."""
    if fmt != "auto":
        return fmt
    suffix = Path(path).suffix.lower()
    for name, suffixes in FORMAT_SUFFIXES.items():
        if suffix in suffixes:
            return name
    raise InputFileError(f"input {path}: unknown format {suffix!r} (use .txt, .jsonl, .parquet or .csv, or set "
                         f"{setting} to one of {', '.join(FORMATS[1:])})")


def iter_batches(path: Path, columns: Sequence[str], fmt: str = "auto", *, optional: Sequence[str] = (),
                 setting: str = "the format") -> Iterator[dict[str, list]]:
    """Batches ``{column: values}`` of `columns` (required) and of those `optional` columns the file has, in
    file order. A text file has one column, its lines, under the first name in `columns`; values of the
    other formats are as stored (None for a JSONL row without an optional field)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"input file not found: {path}")
    if path.stat().st_size == 0:
        raise InputFileError(f"input file is empty: {path}")
    fmt = file_format(path, fmt, setting)
    if fmt == "text":
        yield from _text_batches(path, columns[0])
    elif fmt == "jsonl":
        yield from _jsonl_batches(path, columns, optional)
    else:
        yield from _arrow_batches(path, fmt, columns, optional)


def column_names(path: Path, fmt: str = "auto", *, setting: str = "the format",
                 text_column: str = "text") -> list[str]:
    """The columns a file has (a text file: `text_column`; JSONL: the keys of its first row)."""
    path = Path(path)
    fmt = file_format(path, fmt, setting)
    if fmt == "text":
        return [text_column]
    if fmt == "jsonl":
        first = next(_jsonl_rows(path, []), {})
        return list(first) if isinstance(first, dict) else []
    return _arrow_open(path, fmt, [])[1]


def read_columns(path: Path, columns: Sequence[str], fmt: str = "auto", *, optional: Sequence[str] = (),
                 setting: str = "the format") -> dict[str, list]:
    """The whole file as ``{column: values}`` (see `iter_batches`)."""
    out: dict[str, list] = {column: [] for column in columns}
    for batch in iter_batches(path, columns, fmt, optional=optional, setting=setting):
        for name, values in batch.items():
            out.setdefault(name, []).extend(values)
    return out


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                yield lineno, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise InputFileError(f"input {path} is not valid UTF-8 at line {lineno}: {exc.reason}") from None


def _chunked(rows: Iterator[dict[str, Any]], names: Sequence[str]) -> Iterator[dict[str, list]]:
    batch: dict[str, list] = {name: [] for name in names}
    for row in rows:
        for name in names:
            batch[name].append(row.get(name))
        if len(batch[names[0]]) == BATCH_ROWS:
            yield batch
            batch = {name: [] for name in names}
    if batch[names[0]]:
        yield batch


def _text_batches(path: Path, column: str) -> Iterator[dict[str, list]]:
    yield from _chunked(({column: line} for _, line in _lines(path)), [column])


def _jsonl_rows(path: Path, columns: Sequence[str]) -> Iterator[dict[str, Any]]:
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputFileError(f"input {path} line {lineno} is not JSON: {exc.msg}") from None
        missing = [c for c in columns if not isinstance(obj, dict) or c not in obj]
        if missing:
            keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
            raise InputFileError(f"input {path} line {lineno} has no column {missing[0]!r} (has {keys})")
        yield obj


def _jsonl_batches(path: Path, columns: Sequence[str], optional: Sequence[str]) -> Iterator[dict[str, list]]:
    yield from _chunked(_jsonl_rows(path, columns), [*columns, *optional])


def _arrow_open(path: Path, fmt: str, columns: Sequence[str]):
    """(a Parquet file or a streaming CSV reader, its column names)."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    try:
        if fmt == "parquet":
            source = pq.ParquetFile(path)
            return source, source.schema_arrow.names
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        source = pcsv.open_csv(path, parse_options=pcsv.ParseOptions(delimiter=delimiter),
                               convert_options=pcsv.ConvertOptions(column_types={c: "string" for c in columns}))
        return source, source.schema.names
    except (OSError, ValueError) as exc:  # ArrowInvalid is a ValueError
        kind = "Parquet" if fmt == "parquet" else "CSV"
        raise InputFileError(f"input {path} is not a readable {kind} file: {exc}") from None


def _arrow_batches(path: Path, fmt: str, columns: Sequence[str],
                   optional: Sequence[str]) -> Iterator[dict[str, list]]:
    source, names = _arrow_open(path, fmt, columns)
    for column in columns:
        if column not in names:
            raise InputFileError(f"input {path} has no column {column!r} (has {names})")
    wanted = [*columns, *(c for c in optional if c in names)]
    batches = source.iter_batches(columns=wanted, batch_size=BATCH_ROWS) if fmt == "parquet" else source
    try:
        for batch in batches:
            yield {name: batch.column(batch.schema.get_field_index(name)).to_pylist() for name in wanted}
    except (OSError, ValueError) as exc:
        kind = "Parquet" if fmt == "parquet" else "CSV"
        raise InputFileError(f"input {path} could not be read as {kind}: {exc}") from None
