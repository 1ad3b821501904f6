"""SentEval-protocol STS readers and metric, on the real data and on small hand-written files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from syncse_ray.data.senteval import STS_TEST_TASKS, DataError, load_sts_dev, load_sts_test, read_sts_year
from syncse_ray.eval.sts import spearman_cosine
from syncse_ray.models.vectors import cosine_rows

# Scored pairs per set, as documented in the shared data README (SICK test 4,927: the SentEval protocol).
EXPECTED_PAIRS = {"STS12": 3108, "STS13": 1500, "STS14": 3750, "STS15": 3000, "STS16": 1186,
                  "STSBenchmark": 1379, "SICKRelatedness": 4927}


def test_real_test_sets_have_the_documented_pair_counts(data_dir):
    sets = load_sts_test(data_dir)
    assert tuple(sets) == STS_TEST_TASKS
    for task, (s1, s2, gold) in sets.items():
        assert len(s1) == len(s2) == len(gold) == EXPECTED_PAIRS[task], task
        assert all(s1) and all(s2)
        assert 0.0 <= gold.min() and gold.max() <= 5.0


def test_real_dev_sets_and_truncation(data_dir):
    dev = load_sts_dev(data_dir)
    assert {k: len(v[2]) for k, v in dev.items()} == {"stsb_dev": 1500, "sickr_dev": 500}
    small = load_sts_dev(data_dir, max_pairs=50)
    for name, (s1, s2, gold) in small.items():
        assert len(s1) == len(s2) == len(gold) == 50
        assert s1 == dev[name][0][:50]


def _write_year(root: Path, year: str, subsets: dict[str, tuple[list[str], list[str]]]) -> None:
    folder = root / "senteval" / "STS" / f"{year}-en-test"
    folder.mkdir(parents=True)
    for subset, (pairs, gold) in subsets.items():
        (folder / f"STS.input.{subset}.txt").write_text("\n".join(pairs) + "\n")
        (folder / f"STS.gs.{subset}.txt").write_text("\n".join(gold) + "\n")


def test_year_reader_skips_unscored_pairs_and_concatenates_subsets(tmp_path):
    _write_year(tmp_path, "STS13", {
        "FNWN": (["a  b\tc d", "e f\tg h"], ["1.5", ""]),
        "headlines": (["i j\tk l"], ["4"]),
        "OnWN": (["m n\to p", "q r\ts t"], ["", "0.2"]),
    })
    data = read_sts_year(tmp_path, "STS13")
    assert data.s1 == ["a b", "i j", "q r"]  # whitespace normalised, blank gold lines dropped, SentEval order
    assert data.s2 == ["c d", "k l", "s t"]
    np.testing.assert_allclose(data.gold, [1.5, 4.0, 0.2])
    assert len(data.files) == 6 and len(data.fingerprint()) == 16


def test_missing_file_names_the_file_and_the_fetch_command(tmp_path):
    _write_year(tmp_path, "STS13", {"FNWN": (["a\tb"], ["1"])})
    with pytest.raises(DataError, match=r"STS13-en-test/STS\.input\.headlines\.txt.*run: syncse data fetch --to"):
        read_sts_year(tmp_path, "STS13")
    with pytest.raises(DataError, match=r"STSBenchmark/sts-dev\.csv"):
        load_sts_dev(tmp_path)


def test_mismatched_input_and_gold_lengths_are_an_error(tmp_path):
    _write_year(tmp_path, "STS13", {"FNWN": (["a\tb", "c\td"], ["1"]), "headlines": ([], []), "OnWN": ([], [])})
    with pytest.raises(DataError, match="must pair up"):
        read_sts_year(tmp_path, "STS13")


def test_spearman_cosine_matches_scipy_on_random_embeddings():
    rng = np.random.default_rng(0)
    e1, e2 = rng.normal(size=(200, 16)), rng.normal(size=(200, 16))
    gold = rng.uniform(0, 5, size=200)
    cos = np.array([a @ b / np.linalg.norm(a) / np.linalg.norm(b) for a, b in zip(e1, e2)])
    assert spearman_cosine(e1, e2, gold) == pytest.approx(100 * spearmanr(cos, gold).statistic, abs=1e-9)
    # Perfectly ordered similarities give 100, reversed ones -100; scaling an embedding changes nothing.
    assert spearman_cosine(e1, e2, cos) == pytest.approx(100.0)
    assert spearman_cosine(3 * e1, e2, -cos) == pytest.approx(-100.0)


def test_cosine_rows_handles_zero_vectors_and_checks_shapes():
    np.testing.assert_allclose(cosine_rows(np.array([[1.0, 0], [0, 0]]), np.array([[2.0, 0], [1, 1]])), [1, 0])
    with pytest.raises(ValueError, match="same shape"):
        cosine_rows(np.zeros((2, 3)), np.zeros((3, 3)))
