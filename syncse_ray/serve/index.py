"""The FAISS corpus index behind /v1/search: read a corpus, embed it, save it, load it, search it.

A corpus is a text file (one entry a line; ids are line numbers), JSONL (objects with a text field and an
optional id field), Parquet or CSV (a text column and an optional id column). Ids are returned as strings.

A saved index is a folder: `index.faiss` (an exact inner-product index over unit vectors, i.e. cosine),
`docs.parquet` (id, text in index order) and `meta.json` (model, dimension, size). It is written to a temporary
folder and renamed into place, so a half-written index never exists.

    index = build_index("corpus.jsonl", "bundled:all-minilm-l6-v2", out_dir="runs/index")
    hits = VectorIndex.load("runs/index").search(query_vectors, top_k=5)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from syncse_ray.data.readers import InputFileError, read_columns
from syncse_ray.errors import SyncseError
from syncse_ray.io import atomic_dir

if TYPE_CHECKING:
    import faiss

    from syncse_ray.serve.encoder import SentenceEncoder

INDEX_FILE = "index.faiss"
DOCS_FILE = "docs.parquet"
META_FILE = "meta.json"


class CorpusError(SyncseError, ValueError):
    """A corpus or saved index that cannot be used; the message says why."""


@dataclass(frozen=True)
class Hit:
    id: str
    text: str
    score: float


def read_corpus(path: str | Path, *, text_field: str = "text", id_field: str = "id") -> tuple[list[str], list[str]]:
    """(ids, texts) from a text, JSONL, Parquet or CSV file (`syncse_ray.data.readers`); ids default to the row number.
    Blank texts are skipped."""
    try:
        columns = read_columns(Path(path), [text_field], optional=[id_field])
    except InputFileError as exc:
        raise CorpusError(str(exc).replace("input file not found", "corpus file not found")) from None
    texts = columns.get(text_field, [])
    raw_ids = columns.get(id_field) or [None] * len(texts)
    ids: list[str] = []
    kept: list[str] = []
    for n, (doc_id, text) in enumerate(zip(raw_ids, texts)):
        doc_id = n if doc_id is None else doc_id
        if not isinstance(text, str):
            raise CorpusError(f"{path}: entry {doc_id!r} has a non-string {text_field!r}: {text!r}")
        if text.strip():
            ids.append(str(doc_id))
            kept.append(text)
    if not kept:
        raise CorpusError(f"{path}: the corpus has no non-empty entries")
    return ids, kept


class VectorIndex:
    """Unit vectors in an exact FAISS inner-product index, with the id and text of each entry."""

    def __init__(self, index: faiss.Index, ids: list[str], texts: list[str], *, model: str):
        if not (index.ntotal == len(ids) == len(texts)):
            raise CorpusError(f"{index.ntotal} vectors for {len(ids)} ids and {len(texts)} texts")
        self.index = index
        self.ids = ids
        self.texts = texts
        self.model = model

    @classmethod
    def from_vectors(cls, vectors: np.ndarray, ids: list[str], texts: list[str], *, model: str) -> VectorIndex:
        """An exact inner-product index over `vectors` (unit rows, so scores are cosine similarities)."""
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        return cls(index, ids, texts, model=model)

    @property
    def dimension(self) -> int:
        return int(self.index.d)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, top_k: int) -> list[list[Hit]]:
        """The `top_k` entries nearest each query by cosine (fewer if the corpus is smaller), best first."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dimension:
            raise CorpusError(f"queries of shape {queries.shape} for an index of dimension {self.dimension}")
        scores, rows = self.index.search(queries, min(top_k, len(self)))
        return [[Hit(self.ids[r], self.texts[r], float(s)) for s, r in zip(srow, rrow) if r >= 0]
                for srow, rrow in zip(scores, rows)]

    def save(self, out_dir: str | Path) -> Path:
        """Write the index folder atomically; an existing folder is replaced only once the new one is complete."""
        import faiss
        import pyarrow as pa
        import pyarrow.parquet as pq

        with atomic_dir(Path(out_dir)) as tmp:
            faiss.write_index(self.index, str(tmp / INDEX_FILE))
            pq.write_table(pa.table({"id": self.ids, "text": self.texts}), tmp / DOCS_FILE)
            meta = {"model": self.model, "dimension": self.dimension, "size": len(self), "metric": "cosine"}
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        return Path(out_dir)

    @classmethod
    def load(cls, index_dir: str | Path) -> VectorIndex:
        import faiss
        import pyarrow.parquet as pq

        index_dir = Path(index_dir)
        missing = [f for f in (INDEX_FILE, DOCS_FILE, META_FILE) if not (index_dir / f).is_file()]
        if missing:
            raise CorpusError(f"{index_dir} is not a saved index (missing {', '.join(missing)}); "
                              "build one with `syncse index build`")
        meta = json.loads((index_dir / META_FILE).read_text())
        docs = pq.read_table(index_dir / DOCS_FILE)
        return cls(faiss.read_index(str(index_dir / INDEX_FILE)), docs.column("id").to_pylist(),
                   docs.column("text").to_pylist(), model=meta["model"])


def index_corpus(encoder: SentenceEncoder, corpus: str | Path, *, model: str, batch_size: int = 64,
                 text_field: str = "text", id_field: str = "id") -> VectorIndex:
    """Embed a corpus file with `encoder` into an in-memory index."""
    ids, texts = read_corpus(corpus, text_field=text_field, id_field=id_field)
    return VectorIndex.from_vectors(encoder.encode(texts, batch_size=batch_size), ids, texts, model=model)


def build_index(corpus: str | Path, model: str | Path, out_dir: str | Path | None = None, *,
                device: str = "cpu", batch_size: int = 64, text_field: str = "text",
                id_field: str = "id") -> VectorIndex:
    """Load `model`, embed `corpus` and (if `out_dir`) save the index there; returns the index."""
    from syncse_ray.serve.encoder import SentenceEncoder

    encoder = SentenceEncoder(model, device=device)
    index = index_corpus(encoder, corpus, model=str(model), batch_size=batch_size,
                         text_field=text_field, id_field=id_field)
    if out_dir is not None:
        index.save(out_dir)
    return index
