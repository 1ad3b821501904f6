"""The paper's reranking sets offline: `syncse data fetch --rerank` copies mteb's dataset repos (here from a local
folder laid out like the hub) into `<data_dir>/mteb/<task>/`, and `syncse eval --tasks rerank` scores them through
mteb on those files. The MAP mteb reports is recomputed by hand from the same encoder's vectors. Fast: no network,
no Ray; the bundled all-MiniLM-L6-v2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from syncse_ray.cli import app
from syncse_ray.data.fetch import DATASETS, RERANK_REPOS, Source, fetch, select
from syncse_ray.eval.runner import EvalError, parse_tasks, run_eval

# AskUbuntu-like: each query has candidates (top_ranked) and one or two duplicates among them (qrels). Some
# distractors are close in wording, so the ranking is not perfect: MiniLM ranks a non-duplicate between q1's two
# duplicates and above q2's, so MAP (77.8) differs from 1 and from MRR (83.3) and nDCG.
QUERIES = {"q1": "how do I install a package from the terminal",
           "q2": "wifi stops working after the laptop wakes from sleep",
           "q3": "change the screen brightness from the keyboard"}
CORPUS = {"d1": "install software with apt-get on the command line",
          "d2": "uninstall a package from the terminal",
          "d3": "the wireless connection drops after suspend",
          "d4": "bluetooth stops working after the laptop wakes from sleep",
          "d5": "brightness keys do nothing on my laptop",
          "d6": "how to add a ppa and install a package",
          "d7": "adjust display brightness with function keys"}
QRELS = {"q1": ["d1", "d2"], "q2": ["d3"], "q3": ["d5", "d7"]}
TOP_RANKED = {"q1": ["d1", "d2", "d6", "d4"], "q2": ["d3", "d4", "d2"], "q3": ["d5", "d2", "d7", "d3"]}


def _mteb_repo(folder: Path, qrels: dict[str, list[str]] = QRELS) -> None:
    """An mteb reranking dataset repo as the hub has them: corpus, queries, default (qrels) and top_ranked configs,
    one parquet file each, the configs in README.md; plus a .gitattributes that is not data."""
    from datasets import Dataset

    tables = {
        "corpus": {"_id": list(CORPUS), "text": list(CORPUS.values())},
        "queries": {"_id": list(QUERIES), "text": list(QUERIES.values())},
        "default": {"query-id": [q for q, ds in qrels.items() for _ in ds],
                    "corpus-id": [d for ds in qrels.values() for d in ds],
                    "score": [1 for ds in qrels.values() for _ in ds]},
        "top_ranked": {"query-id": list(TOP_RANKED), "corpus-ids": list(TOP_RANKED.values())},
    }
    readme = ["---", "configs:"]
    for config, columns in tables.items():
        (folder / config).mkdir(parents=True)
        Dataset.from_dict(columns).to_parquet(str(folder / config / "test-00000-of-00001.parquet"))
        readme += [f"- config_name: {config}", "  data_files:", "  - split: test", f"    path: {config}/test-*"]
    (folder / "README.md").write_text("\n".join([*readme, "---", ""]))
    (folder / ".gitattributes").write_text("*.parquet filter=lfs\n")


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hub")
    for repo, _ in RERANK_REPOS.values():
        _mteb_repo(root / repo)
    return root


@pytest.fixture()
def source(tmp_path, monkeypatch) -> Source:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return lambda root: Source(root, cache_dir=tmp_path / "hf-cache")


def test_the_pinned_revisions_are_the_ones_mteb_loads():
    import mteb

    for task, (repo, revision) in RERANK_REPOS.items():
        dataset = mteb.get_task(task).metadata.dataset
        assert (dataset["path"], dataset["revision"]) == (repo, revision), task


def test_rerank_sets_are_fetched_only_when_asked():
    assert not [s for s in select() if s.rerank]
    rerank = [s.name for s in select(rerank=True) if s.rerank]
    assert rerank == ["rerank-askubuntu", "rerank-mindsmall", "rerank-scidocs", "rerank-stackoverflow"]
    assert [s.name for s in select(["snli"], rerank=True)] == ["snli", *rerank]
    assert all(DATASETS[n].revision == RERANK_REPOS[DATASETS[n].repo.split("/")[1]][1] for n in rerank)


def test_rerank_task_specs():
    assert parse_tasks(["rerank"])["rerank"] == ["AskUbuntuDupQuestions", "MindSmallReranking", "SciDocsRR",
                                                 "StackOverflowDupQuestions"]
    assert parse_tasks(["rerank:scidocsrr", "sts:STSBenchmark"]) == {
        "sts": ["STSBenchmark"], "sts-dev": [], "transfer": [], "rerank": ["SciDocsRR"], "mteb": []}
    with pytest.raises(EvalError, match="rerank:<AskUbuntuDupQuestions"):
        parse_tasks(["rerank:nope"])


def _hand_map(encoder) -> float:
    """MAP over the queries: each query's candidates ranked by cosine; AP = mean over its relevant documents of
    the precision at the rank where each is found."""
    aps = []
    for qid, candidates in TOP_RANKED.items():
        q = encoder.encode([QUERIES[qid]], show_progress=False)[0]
        docs = encoder.encode([CORPUS[d] for d in candidates], show_progress=False)
        cos = docs @ q / (np.linalg.norm(docs, axis=1) * np.linalg.norm(q))
        ranked = [candidates[i] for i in np.argsort(-cos)]
        hits, precisions = 0, []
        for rank, doc in enumerate(ranked, start=1):
            if doc in QRELS[qid]:
                hits += 1
                precisions.append(hits / rank)
        aps.append(sum(precisions) / len(QRELS[qid]))
    return 100 * float(np.mean(aps))


def test_fetched_rerank_set_is_scored_by_mteb_offline(hub, source, tmp_path):
    data = tmp_path / "data"
    results = fetch(data, only=["rerank-askubuntu"], source=source(hub))
    assert [(r.name, r.status) for r in results] == [("rerank-askubuntu", "fetched")]
    folder = data / "mteb" / "AskUbuntuDupQuestions"
    assert (folder / "README.md").is_file() and not (folder / ".gitattributes").exists()
    entry = json.loads((data / "manifest.json").read_text())["datasets"]["rerank-askubuntu"]
    assert entry["rows"] == {"corpus": {"test": 7}, "queries": {"test": 3}, "default": {"test": 5},
                             "top_ranked": {"test": 3}}
    assert entry["source"]["hub"] == "mteb/AskUbuntuDupQuestions" and entry["source"]["revision"] is None
    assert fetch(data, only=["rerank-askubuntu"], source=source(hub))[0].status == "skipped"

    from syncse_ray.models.encoders import load_encoder

    encoder = load_encoder("bundled:all-minilm-l6-v2")
    expected = _hand_map(encoder)
    assert expected == pytest.approx(100 * (5 / 6 + 1 / 2 + 1) / 3)  # AP: q1 (1 + 2/3)/2, q2 1/2, q3 1
    # SciDocsRR was not fetched: skipped with the command that fetches it, the other scored
    out = run_eval(encoder, ["rerank:AskUbuntuDupQuestions", "rerank:SciDocsRR"], data, tmp_path / "eval",
                   mteb_source="local", show_progress=False, cache_dir=tmp_path / "cache")
    assert len(out["skipped"]) == 1 and "SciDocsRR" in out["skipped"][0] and "--rerank" in out["skipped"][0]
    (record,) = out["records"]
    assert (record["task"], record["protocol"], record["metric"]) == ("AskUbuntuDupQuestions", "mteb-local",
                                                                      "map_at_1000")
    assert record["data"] == str(folder) and len(record["data_fingerprint"]) == 16
    assert record["score"] == pytest.approx(expected, abs=1e-3)


def test_an_mteb_task_with_no_local_copy_offline_names_the_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNCSE_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["eval", "bundled:all-minilm-l6-v2", "--tasks", "mteb:SciDocsRR",
                                      "--mteb-source", "local", "--data-dir", str(tmp_path),
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert "syncse data fetch --rerank" in " ".join(result.output.split())


def test_another_copy_of_a_task_is_read_as_it_is(hub, tmp_path):
    """`datasets` names a local folder's cache after the folder and its file patterns: a second data dir whose
    AskUbuntuDupQuestions has other qrels must not be served the first one's rows (the cache is keyed by content)."""
    from syncse_ray.models.encoders import load_encoder

    encoder = load_encoder("bundled:all-minilm-l6-v2")
    scores = []
    for name, qrels in (("a", QRELS), ("b", {**QRELS, "q1": ["d1"]})):  # b: q1's AP is 1
        _mteb_repo(tmp_path / name / "mteb" / "AskUbuntuDupQuestions", qrels)
        out = run_eval(encoder, ["rerank:AskUbuntuDupQuestions"], tmp_path / name, mteb_source="local",
                       show_progress=False, cache_dir=tmp_path / "cache")
        scores.append(out["records"][0]["score"])
    assert scores == pytest.approx([100 * (5 / 6 + 1 / 2 + 1) / 3, 100 * (1 + 1 / 2 + 1) / 3], abs=1e-3)


def test_data_fetch_rerank_on_the_command_line(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    data = tmp_path / "data"
    result = CliRunner().invoke(app, ["data", "fetch", "--to", str(data), "--source", str(hub), "--rerank",
                                      "--only", "rerank-scidocs"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (data / "mteb").iterdir()) == sorted(RERANK_REPOS)
    manifest = json.loads((data / "manifest.json").read_text())["datasets"]
    assert list(manifest) == ["rerank-scidocs", "rerank-askubuntu", "rerank-mindsmall", "rerank-stackoverflow"]
