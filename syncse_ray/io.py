"""Files out, the same way in every stage: atomic writes and Markdown tables.

Writers put a whole file in place or nothing (temp file + rename), so an interrupted run never leaves half a file
where a finished one is expected. The readers of each input format are `syncse_ray.data.readers`.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CARD = "README.md"  # a folder's Hugging Face card: the dataset card of synth/, the model card of a model


def _atomic(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    """`text` at `path`, or nothing: written aside, then renamed into place."""
    return _atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json_atomic(path: Path, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, default=str))


def write_table_atomic(path: Path, rows: list[dict[str, Any]], schema) -> Path:
    """All of `rows` as one Parquet file at `path` with the pyarrow `schema`, or nothing."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    return _atomic(path, lambda tmp: pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp))


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """A temporary sibling folder to fill; when the block ends without error it replaces `final` (so a
    half-written folder never stands where a finished one is expected), otherwise it is removed."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def markdown_table(header: Sequence[Any], rows: Sequence[Sequence[Any]], text_columns: int = 1) -> list[str]:
    """A Markdown table as lines: the first `text_columns` columns left-aligned, the (numeric) rest right."""
    def row(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(str(c) for c in cells) + " |"

    align = ["---"] * text_columns + ["---:"] * (len(header) - text_columns)
    return [row(header), row(align), *map(row, rows)]
