"""SentEval transfer tasks: readers on hand-written files in SentEval's layout, the probe, run_eval end to end."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from syncse_ray.data.senteval import TRANSFER_TASKS, DataError, TransferSkipped, read_transfer
from syncse_ray.eval import run_eval
from syncse_ray.eval.transfer import C_GRID, _fit, probe_accuracy, select_c, solver_for

POS = ["a wonderful , moving film", "i loved every minute of it", "brilliant acting and a great story",
       "the best movie of the year", "a delightful and charming comedy", "beautifully shot and deeply touching",
       "an excellent , heartfelt drama", "funny , warm and wonderful", "a superb performance by the lead",
       "great fun from start to finish", "a masterpiece of modern cinema", "joyful , clever and inspiring"]
NEG = ["a dull , boring mess", "i hated every minute of it", "terrible acting and a stupid story",
       "the worst movie of the year", "a tedious and unfunny comedy", "ugly to look at and painfully slow",
       "an awful , lifeless drama", "bland , cold and annoying", "a dreadful performance by the lead",
       "a chore to sit through", "a disaster from start to finish", "pointless , clumsy and depressing"]
TREC = {"ABBR": ["What does NASA stand for ?", "What is the abbreviation for kilogram ?"],
        "DESC": ["How does photosynthesis work ?", "Why is the sky blue ?"],
        "ENTY": ["What animal has the longest neck ?", "What color is a ripe banana ?"],
        "HUM": ["Who wrote Hamlet ?", "Who was the first president of the United States ?"],
        "LOC": ["Where is the Eiffel Tower ?", "What city is the capital of Japan ?"],
        "NUM": ["How many legs does a spider have ?", "When did World War II end ?"]}
PARAPHRASES = [("The company reported higher profits this year .", "Profits at the company rose this year ."),
               ("He left the meeting early .", "He departed from the meeting before it ended ."),
               ("The storm closed the schools .", "Schools were shut because of the storm ."),
               ("She won the race easily .", "She easily came first in the race ."),
               ("Prices fell sharply on Monday .", "On Monday prices dropped steeply ."),
               ("The bridge will reopen next week .", "Next week the bridge opens again .")]
NON_PARAPHRASES = [("The company reported higher profits this year .", "The weather was cold in Norway ."),
                   ("He left the meeting early .", "A cat climbed the old oak tree ."),
                   ("The storm closed the schools .", "She baked bread for her neighbours ."),
                   ("She won the race easily .", "The museum bought a new painting ."),
                   ("Prices fell sharply on Monday .", "My phone battery died again ."),
                   ("The bridge will reopen next week .", "They planted tomatoes in the garden .")]


def write_transfer_layout(root: Path) -> Path:
    """All seven transfer tasks in SentEval's data/downstream layout (below <root>/senteval), tiny."""
    se = root / "senteval"
    for task, (pos_name, neg_name) in {"MR": ("rt-polarity.pos", "rt-polarity.neg"),
                                       "CR": ("custrev.pos", "custrev.neg"),
                                       "SUBJ": ("subj.subjective", "subj.objective"),
                                       "MPQA": ("mpqa.pos", "mpqa.neg")}.items():
        (se / task).mkdir(parents=True)
        (se / task / pos_name).write_text("\n".join(POS) + "\n", encoding="latin-1")
        (se / task / neg_name).write_text("\n".join(NEG) + "\n", encoding="latin-1")
    sst = se / "SST" / "binary"
    sst.mkdir(parents=True)
    for split, sl in (("train", slice(0, 8)), ("dev", slice(8, 10)), ("test", slice(10, 12))):
        rows = [f"{s}\t1" for s in POS[sl]] + [f"{s}\t0" for s in NEG[sl]]
        (sst / f"sentiment-{split}").write_text("\n".join(rows) + "\n")
    (se / "TREC").mkdir()
    (se / "TREC" / "train_5500.label").write_text("".join(
        f"{c}:desc {q}\n" for c, qs in TREC.items() for q in qs * 2), encoding="latin-1")
    (se / "TREC" / "TREC_10.label").write_text("".join(f"{c}:other {qs[0]}\n" for c, qs in TREC.items()),
                                               encoding="latin-1")
    (se / "MRPC").mkdir()
    header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    for split, sl in (("train", slice(0, 4)), ("test", slice(4, 6))):
        rows = [f"1\t{i}\t{i + 1}\t{a}\t{b}\n" for i, (a, b) in enumerate(PARAPHRASES[sl])]
        rows += [f"0\t{i}\t{i + 1}\t{a}\t{b}\n" for i, (a, b) in enumerate(NON_PARAPHRASES[sl])]
        (se / "MRPC" / f"msr_paraphrase_{split}.txt").write_text(header + "".join(rows))
    return root


@pytest.fixture(scope="module")
def transfer_dir(tmp_path_factory) -> Path:
    return write_transfer_layout(tmp_path_factory.mktemp("transfer"))


def test_readers_follow_the_senteval_layout(transfer_dir):
    mr = read_transfer(transfer_dir, "MR")
    assert len(mr.texts["all"][0]) == 24 and mr.labels["all"].tolist() == [0] * 12 + [1] * 12
    sst = read_transfer(transfer_dir, "SST2")
    assert {k: len(v) for k, v in sst.labels.items()} == {"train": 16, "dev": 4, "test": 4}
    trec = read_transfer(transfer_dir, "TREC")
    assert trec.texts["test"][0][0] == "What does NASA stand for ?"  # "ABBR:other " stripped
    assert sorted(set(trec.labels["train"].tolist())) == [0, 1, 2, 3, 4, 5]
    mrpc = read_transfer(transfer_dir, "MRPC")
    assert len(mrpc.texts["train"]) == 2 and mrpc.labels["test"].tolist() == [1, 1, 0, 0]


def test_absent_task_folder_is_skipped_but_a_missing_file_is_an_error(tmp_path, transfer_dir):
    with pytest.raises(TransferSkipped, match=r"MR skipped: .*senteval/MR does not exist"):
        read_transfer(tmp_path, "MR")
    (tmp_path / "senteval" / "CR").mkdir(parents=True)
    (tmp_path / "senteval" / "CR" / "custrev.pos").write_text("fine\n")
    with pytest.raises(DataError, match=r"missing file .*CR/custrev\.neg"):
        read_transfer(tmp_path, "CR")


def test_probe_separates_separable_features_and_not_random_labels():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 100)
    x = rng.normal(size=(200, 8)) + 3.0 * y[:, None]
    assert probe_accuracy({"all": x}, {"all": y}, kfold=3) > 95.0
    noise = rng.normal(size=(200, 8))
    assert probe_accuracy({"all": noise}, {"all": rng.permutation(y)}, kfold=3) < 70.0
    split = {"train": x[::2], "dev": x[1::4], "test": x[3::4]}
    labels = {"train": y[::2], "dev": y[1::4], "test": y[3::4]}
    assert probe_accuracy(split, labels) > 95.0
    assert select_c(x, y, kfold=3, seed=0) in C_GRID


def test_run_eval_transfer_with_minilm(minilm_encoder, transfer_dir, tmp_path):
    results = run_eval(minilm_encoder, ["transfer"], transfer_dir, tmp_path, kfold=3, show_progress=False)
    rows = {r["task"]: r for r in results["records"]}
    assert list(rows) == [*TRANSFER_TASKS, "avg"]
    assert rows["MR"]["split"] == "3-fold" and rows["TREC"]["split"] == "test"
    for task in ("MR", "CR", "SUBJ", "MPQA", "SST2"):
        assert rows[task]["score"] >= 75.0, task  # clear sentiment words; chance is 50
    assert rows["TREC"]["score"] >= 83.0  # at most 1 of the 6 test questions wrong; chance is 1 in 6
    assert rows["MRPC"]["score"] >= 75.0  # at most 1 of the 4 test pairs wrong; chance is 50
    assert rows["avg"]["score"] == pytest.approx(np.mean([rows[t]["score"] for t in TRANSFER_TASKS]))
    table = (tmp_path / "results.md").read_text()
    assert "### Transfer" in table and f"{rows['avg']['score']:.2f}" in table


def test_run_eval_skips_absent_transfer_tasks_with_a_message(minilm_encoder, tmp_path):
    data = tmp_path / "data"
    (data / "senteval" / "MR").mkdir(parents=True)
    (data / "senteval" / "MR" / "rt-polarity.pos").write_text("\n".join(POS) + "\n")
    (data / "senteval" / "MR" / "rt-polarity.neg").write_text("\n".join(NEG) + "\n")
    results = run_eval(minilm_encoder, ["transfer"], data, kfold=3, show_progress=False)
    assert [r["task"] for r in results["records"]] == ["MR", "avg"]
    assert len(results["skipped"]) == 6 and all("does not exist" in m for m in results["skipped"])


def test_the_probe_gives_the_same_accuracy_in_parallel_as_one_fit_after_another():
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], 60)
    x = rng.normal(size=(120, 16)) + 0.6 * y[:, None]  # separable in part: C matters
    split = {"train": x[:80], "dev": x[80:100], "test": x[100:]}
    split_labels = {"train": y[:80], "dev": y[80:100], "test": y[100:]}
    for feats, labels in (({"all": x}, {"all": y}), (split, split_labels),
                          ({"train": x[:100], "test": x[100:]}, {"train": y[:100], "test": y[100:]})):
        assert probe_accuracy(feats, labels, kfold=3, n_jobs=2) == probe_accuracy(feats, labels, kfold=3, n_jobs=1)
    assert select_c(x, y, kfold=3, seed=0, n_jobs=2) == select_c(x, y, kfold=3, seed=0, n_jobs=1)


def test_a_two_class_probe_fit_reaches_the_optimum_on_badly_scaled_embeddings():
    """Raw LM embeddings mix dimensions of very different scales: the fit must end at the L2-regularised optimum
    (gradient ~0), not at an iteration cap (lbfgs stopped at 2,000 on MRPC's real pair features)."""
    from sklearn.exceptions import ConvergenceWarning

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 300)
    x = (rng.normal(size=(600, 64)) + 0.3 * y[:, None]) * np.logspace(-2, 2, 64)
    c = 8.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = _fit(x, y, c, seed=0)
    # sklearn's objective: C · Σ log-loss + ½‖w‖² (the intercept unpenalised): its gradient in w
    gradient = c * x.T @ (model.predict_proba(x)[:, 1] - y) + model.coef_[0]
    assert np.linalg.norm(gradient) < 1e-3 * np.linalg.norm(model.coef_)
    assert solver_for(2) == "newton-cholesky" and solver_for(6) == "lbfgs"  # TREC: the (d·k)² Hessian costs more
