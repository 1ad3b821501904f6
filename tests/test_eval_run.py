"""run_eval end to end with the bundled MiniLM: SentEval STS vs mteb, results JSON/Markdown, CLI, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from syncse_ray.data.senteval import STS_TEST_TASKS, DataError, read_sick
from syncse_ray.eval import render_table, run_eval
from syncse_ray.eval.mteb_tasks import MtebTaskError, run_mteb
from syncse_ray.eval.results import PAPER_STS_AVG
from syncse_ray.eval.runner import EvalError, parse_tasks
from syncse_ray.models.references import ModelError

# Hand-written pairs with gold similarity 0-5 (clear paraphrases high, unrelated pairs low).
PAIRS = [
    ("a man is playing a guitar .", "a man plays the guitar .", 4.8),
    ("a woman is slicing an onion .", "a woman cuts an onion .", 4.4),
    ("two dogs run across a field .", "dogs are running on the grass .", 3.8),
    ("a child is reading a book .", "a kid reads a novel in bed .", 3.0),
    ("the train arrived late .", "the bus was on time .", 1.6),
    ("a cat sleeps on the sofa .", "the stock market fell sharply .", 0.2),
    ("a chef is cooking pasta .", "someone is swimming in the sea .", 0.4),
    ("the sun sets over the hills .", "a programmer fixes a bug .", 0.0),
]
YEARS = {"STS12": ["MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN", "surprise.SMTnews"],
         "STS13": ["FNWN", "headlines", "OnWN"],
         "STS14": ["deft-forum", "deft-news", "headlines", "images", "OnWN", "tweet-news"],
         "STS15": ["answers-forums", "answers-students", "belief", "headlines", "images"],
         "STS16": ["answer-answer", "headlines", "plagiarism", "postediting", "question-question"]}


def write_sts_layout(root: Path) -> Path:
    """A complete, tiny SentEval STS/SICK layout (every subset holds the same pairs, plus one unscored pair)."""
    sts = root / "senteval" / "STS"
    for year, subsets in YEARS.items():
        folder = sts / f"{year}-en-test"
        folder.mkdir(parents=True)
        for subset in subsets:
            (folder / f"STS.input.{subset}.txt").write_text(
                "".join(f"{a}\t{b}\n" for a, b, _ in PAIRS) + "an unscored pair .\tit has no gold .\n")
            (folder / f"STS.gs.{subset}.txt").write_text("".join(f"{g}\n" for *_, g in PAIRS) + "\n")
    (sts / "STSBenchmark").mkdir()
    for split in ("train", "dev", "test"):
        (sts / "STSBenchmark" / f"sts-{split}.csv").write_text("".join(
            f"main-captions\tMSRvid\t2012test\t{i:04d}\t{g}\t{a}\t{b}\n" for i, (a, b, g) in enumerate(PAIRS)))
    sick = root / "senteval" / "SICK"
    sick.mkdir(parents=True)
    for name in ("SICK_train.txt", "SICK_trial.txt", "SICK_test_annotated.txt"):
        (sick / name).write_text("pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment\n" + "".join(
            f"{i}\t{a}\t{b}\t{g}\tNEUTRAL\n" for i, (a, b, g) in enumerate(PAIRS)))
    return root


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return write_sts_layout(tmp_path_factory.mktemp("tiny-senteval"))


@pytest.mark.slow  # encodes STS-B test twice with MiniLM (~10 s)
def test_senteval_stsb_equals_mteb_stsbenchmark_on_the_real_data(minilm_encoder, data_dir, tmp_path):
    """Two implementations, one number: our reader + spearman_cosine vs mteb's STS evaluator (fed the same
    file through mteb's data pipeline and our mteb wrapper)."""
    results = run_eval(minilm_encoder, ["sts:STSBenchmark", "mteb:STSBenchmark"], data_dir, tmp_path,
                       mteb_source="local", show_progress=False)
    by = {r["protocol"]: r for r in results["records"]}
    senteval, mteb = by["senteval-sts"], by["mteb-local"]
    assert senteval["n"] == mteb["n"] == 1379
    assert senteval["data_fingerprint"] == mteb["data_fingerprint"]
    assert 75.0 < senteval["score"] < 90.0  # all-MiniLM-L6-v2 scores ~82 on STS-B test
    assert abs(senteval["score"] - mteb["score"]) < 0.1


def test_seven_sts_tasks_average_dev_and_outputs(minilm_encoder, tiny_dir, tmp_path):
    results = run_eval(minilm_encoder, ["sts", "sts-dev"], tiny_dir, tmp_path, show_progress=False)
    sts = {r["task"]: r for r in results["records"] if r["protocol"] == "senteval-sts"}
    assert list(sts) == [*STS_TEST_TASKS, "avg"]
    year_pairs = {"STS12": 5, "STS13": 3, "STS14": 6, "STS15": 5, "STS16": 5}
    for task, r in sts.items():
        if task in year_pairs:  # subsets concatenated, unscored pairs dropped
            assert r["n"] == year_pairs[task] * len(PAIRS)
        assert r["score"] > 60.0, task  # the hand-written gold order is easy for MiniLM
        assert set(r) >= {"model", "protocol", "task", "split", "score", "data_fingerprint", "time"}
    assert sts["avg"]["score"] == pytest.approx(np.mean([sts[t]["score"] for t in STS_TEST_TASKS]))
    dev = {r["task"] for r in results["records"] if r["protocol"] == "senteval-sts-dev"}
    assert dev == {"stsb_dev", "sickr_dev"}

    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["records"] == results["records"] and saved["model"] == "bundled:all-minilm-l6-v2"
    table = (tmp_path / "results.md").read_text()
    assert table == render_table(tmp_path / "results.json") == render_table(results)
    assert f"| {sts['avg']['score']:.2f} |" in table
    for name, avg in PAPER_STS_AVG:
        assert f"{name}-RoBERTa-base (paper)" in table and f"{avg:.2f}" in table


def test_mteb_sts_offline_from_local_files_and_sickr_protocol(minilm_encoder, tiny_dir):
    records = run_mteb(minilm_encoder, ["sts"], tiny_dir, source="local", show_progress=False)
    assert [r["task"] for r in records] == ["STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "SICK-R"]
    assert all(r["protocol"] == "mteb-local" and r["metric"] == "cosine_spearman" for r in records)
    # mteb's SICK-R uses every SICK pair (train + trial + test); SentEval only the test pairs.
    sick = records[-1]
    assert sick["n"] == 3 * len(read_sick(tiny_dir, "test").gold)
    assert all(r["score"] > 60.0 for r in records)


def test_unknown_and_hub_only_mteb_tasks_are_clear_errors(minilm_encoder, tiny_dir):
    with pytest.raises(MtebTaskError, match="unknown mteb task 'STSBenchmarkk'.*STSBenchmark"):
        run_eval("bundled:all-minilm-l6-v2", ["mteb:STSBenchmarkk"], tiny_dir)
    with pytest.raises(MtebTaskError, match="AskUbuntuDupQuestions.*Hugging Face hub"):
        run_mteb(minilm_encoder, ["AskUbuntuDupQuestions"], tiny_dir, source="local")


def test_bad_task_specs_and_missing_data_fail_before_loading_the_model(tmp_path):
    with pytest.raises(EvalError, match="unknown task 'sts:STS17'"):
        parse_tasks(["sts:STS17"])
    with pytest.raises(EvalError, match="unknown task 'glue'"):
        run_eval("no/such-model-anywhere", ["glue"], tmp_path)
    # The model reference is bogus too: the data check comes first and names the file and the layout.
    with pytest.raises(DataError, match=r"STS12-en-test/STS\.input\.MSRpar\.txt.*run: syncse data fetch"):
        run_eval("./no-such-folder", ["sts"], tmp_path)
    assert parse_tasks(["sts:STS12", "sts", "mteb:reranking", "transfer:sst-2"]) == {
        "sts": ["STS12", *[t for t in STS_TEST_TASKS if t != "STS12"]], "sts-dev": [],
        "transfer": ["SST2"], "rerank": [],
        "mteb": ["AskUbuntuDupQuestions", "MindSmallReranking", "SciDocsRR", "StackOverflowDupQuestions"]}


def test_unloadable_models_are_model_errors(tiny_dir, tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        run_eval("./no-such-folder", ["sts:STS13"], tiny_dir)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ModelError, match="cannot load model"):
        run_eval(str(broken), ["sts:STS13"], tiny_dir)


def test_cli_writes_results_and_reports_bad_input(tiny_dir, tmp_path):
    from syncse_ray.cli import app

    runner = CliRunner()
    out = tmp_path / "out"
    ok = runner.invoke(app, ["eval", "bundled:all-minilm-l6-v2", "--tasks", "sts:STS13,sts:STSBenchmark",
                             "--data-dir", str(tiny_dir), "--out", str(out)])
    assert ok.exit_code == 0, ok.output
    assert "| `bundled:all-minilm-l6-v2` | – | " in ok.output and "SynCSE-partial-RoBERTa-base (paper)" in ok.output
    records = json.loads((out / "results.json").read_text())["records"]
    assert [r["task"] for r in records] == ["STS13", "STSBenchmark"]

    bad = runner.invoke(app, ["eval", "bundled:all-minilm-l6-v2", "--data-dir", str(tmp_path / "empty"),
                              "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2
    assert "STS.input.MSRpar.txt" in bad.output and "run: syncse data fetch" in bad.output
    unknown = runner.invoke(app, ["eval", "bundled:all-minilm-l6-v2", "--tasks", "mteb:NoSuchTask",
                                  "--data-dir", str(tiny_dir)])
    assert unknown.exit_code == 2 and "unknown mteb task 'NoSuchTask'" in unknown.output
