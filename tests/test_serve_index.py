"""The FAISS corpus index: corpus formats, known nearest neighbours, save/load round trip. Real model, no Ray."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from syncse_ray.serve.index import CorpusError, VectorIndex, build_index, index_corpus, read_corpus

CORPUS = [
    ("cat", "A cat is sleeping on the warm windowsill."),
    ("stock", "The stock market fell sharply after the interest rate announcement."),
    ("pasta", "Boil the pasta in salted water for ten minutes."),
    ("rocket", "The rocket launched into orbit carrying two satellites."),
    ("soccer", "The football team won the championship final on penalties."),
]
QUERIES = {
    "A kitten naps in the sun by the window.": "cat",
    "Shares dropped after the central bank raised rates.": "stock",
    "How long should I cook spaghetti?": "pasta",
    "A spacecraft was sent into space.": "rocket",
    "Who won the soccer cup?": "soccer",
}


@pytest.fixture(scope="module")
def encoder(minilm_path):
    from syncse_ray.serve.encoder import SentenceEncoder

    return SentenceEncoder(minilm_path)


@pytest.fixture
def jsonl_corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in CORPUS))
    return path


def test_read_corpus_formats(tmp_path, jsonl_corpus):
    txt = tmp_path / "c.txt"
    txt.write_text("first\n\nthird\n")
    assert read_corpus(txt) == (["0", "2"], ["first", "third"])
    assert read_corpus(jsonl_corpus)[0] == [i for i, _ in CORPUS]
    parquet = tmp_path / "c.parquet"
    pq.write_table(pa.table({"doc": [7, 8], "body": ["x", "y"]}), parquet)
    assert read_corpus(parquet, text_field="body", id_field="doc") == (["7", "8"], ["x", "y"])
    with pytest.raises(CorpusError, match="no column 'text'"):
        read_corpus(parquet)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": 3}\n')
    with pytest.raises(CorpusError, match="non-string"):
        read_corpus(bad)
    with pytest.raises(CorpusError, match="not found"):
        read_corpus(tmp_path / "missing.txt")


def test_search_finds_known_neighbours(encoder, jsonl_corpus):
    index = index_corpus(encoder, jsonl_corpus, model="minilm")
    hits = index.search(encoder.encode(list(QUERIES)), top_k=2)
    assert [h[0].id for h in hits] == list(QUERIES.values())
    for row in hits:
        assert len(row) == 2 and row[0].score >= row[1].score and -1.0 <= row[1].score <= 1.0 + 1e-5
    assert len(index.search(encoder.encode(["q"]), top_k=50)[0]) == len(CORPUS)  # top_k > corpus size


def test_build_save_load_round_trip(minilm_path, encoder, jsonl_corpus, tmp_path):
    out = tmp_path / "index"
    built = build_index(jsonl_corpus, minilm_path, out)
    loaded = VectorIndex.load(out)
    assert len(loaded) == len(CORPUS) and loaded.dimension == 384 and loaded.ids == built.ids
    queries = encoder.encode(list(QUERIES))
    assert [[h.id for h in row] for row in loaded.search(queries, 3)] == \
           [[h.id for h in row] for row in built.search(queries, 3)]
    assert not list(tmp_path.glob(".tmp-*"))
    with pytest.raises(CorpusError, match="not a saved index"):
        VectorIndex.load(tmp_path)
    with pytest.raises(CorpusError, match="dimension"):
        loaded.search(np.zeros((1, 8), dtype=np.float32), 1)


def test_index_build_command(minilm_path, jsonl_corpus, tmp_path):
    from typer.testing import CliRunner

    from syncse_ray.cli import app

    out = tmp_path / "cli-index"
    result = CliRunner().invoke(app, ["index", "build", str(jsonl_corpus), "--model", str(minilm_path),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"indexed {len(CORPUS)} entries" in result.output and len(VectorIndex.load(out)) == len(CORPUS)
    missing = CliRunner().invoke(app, ["index", "build", str(tmp_path / "nope.txt"), "--model",
                                       str(minilm_path), "--out", str(out)])
    assert missing.exit_code == 2 and "corpus file not found" in missing.output
