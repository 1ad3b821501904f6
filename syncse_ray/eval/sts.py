"""SentEval-protocol semantic textual similarity (STS): readers and the metric. Pure: numpy + scipy, no Ray.

Protocol (SentEval "all", as reported by SimCSE and SynCSE):

- STS12–STS16: every scored pair of a year's subsets is concatenated, and one Spearman rank correlation is taken
  between the cosine similarities of the two sentences' embeddings and the gold scores. Pairs whose gold line is
  blank are unscored and dropped. STS13 has no SMT subset (its input is not distributed).
- STS-B and SICK-R: the test split (STS-B ``sts-test.csv``, SICK ``SICK_test_annotated.txt``), cosine similarity,
  no trained regressor.
- Dev (model selection during training): STS-B ``sts-dev.csv`` and SICK ``SICK_trial.txt``.

Every score is ``100 * spearman(cos(e1_i, e2_i), gold_i)``. Sentences are whitespace-normalised (SentEval splits
on whitespace and the SimCSE batcher joins with one space); the files are already tokenised and lower-cased.

Layout, below ``<data_dir>/senteval``::

    STS/STS12-en-test … STS16-en-test/STS.input.<subset>.txt   two tab-separated sentences a line
                                       /STS.gs.<subset>.txt     gold score a line (blank: unscored)
    STS/STSBenchmark/sts-{train,dev,test}.csv                   tab-separated; score field 5, sentences 6 and 7
    SICK/SICK_{train,trial,test_annotated}.txt                  header; sentence_A, sentence_B, relatedness_score
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from syncse_ray.data.datadir import MissingDataError, missing_data
from syncse_ray.errors import SyncseError
from syncse_ray.models.vectors import cosine_rows

Pairs = tuple[list[str], list[str], np.ndarray]

# The subsets SentEval reads for each year (senteval/sts.py); STS13's SMT input is not distributed.
STS_YEAR_SUBSETS: dict[str, tuple[str, ...]] = {
    "STS12": ("MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN", "surprise.SMTnews"),
    "STS13": ("FNWN", "headlines", "OnWN"),
    "STS14": ("deft-forum", "deft-news", "headlines", "images", "OnWN", "tweet-news"),
    "STS15": ("answers-forums", "answers-students", "belief", "headlines", "images"),
    "STS16": ("answer-answer", "headlines", "plagiarism", "postediting", "question-question"),
}
STS_TEST_TASKS: tuple[str, ...] = (*STS_YEAR_SUBSETS, "STSBenchmark", "SICKRelatedness")
STS_DEV_TASKS: tuple[str, ...] = ("stsb_dev", "sickr_dev")

LAYOUT_HINT = (
    "expected the SentEval layout under <data_dir>/senteval: STS/STS12-en-test … STS16-en-test/"
    "STS.input.<subset>.txt + STS.gs.<subset>.txt, STS/STSBenchmark/sts-{dev,test}.csv, "
    "SICK/SICK_{trial,test_annotated}.txt (see the shared data README)"
)


class DataError(SyncseError, FileNotFoundError):
    """An evaluation file is missing or malformed; the message names the file and the expected layout."""


class MissingEvalData(DataError, MissingDataError):
    """An evaluation file is not in the data dir; the message names it and `syncse data fetch`."""


@dataclass
class StsData:
    """The scored pairs of one STS evaluation set plus the files they came from (for the data fingerprint)."""

    name: str
    split: str
    s1: list[str]
    s2: list[str]
    gold: np.ndarray
    files: list[Path] = field(default_factory=list)

    @property
    def pairs(self) -> Pairs:
        return self.s1, self.s2, self.gold

    def fingerprint(self) -> str:
        return files_fingerprint(self.files)


def files_fingerprint(files: list[Path]) -> str:
    """sha256 (first 16 hex digits) over the names and bytes of the files, in order."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + Path(path).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _norm(sentence: str) -> str:
    return " ".join(sentence.split())


def _require(path: Path, data_dir: str | Path) -> Path:
    if not path.is_file():
        raise missing_data(path, data_dir, what="evaluation file", cls=MissingEvalData)
    return path


def _senteval(data_dir: str | Path) -> Path:
    return Path(data_dir) / "senteval"


def read_sts_year(data_dir: str | Path, year: str) -> StsData:
    """All scored pairs of one STS year (STS12 … STS16), its subsets concatenated in SentEval's order."""
    if year not in STS_YEAR_SUBSETS:
        raise ValueError(f"unknown STS year {year!r}; known: {', '.join(STS_YEAR_SUBSETS)}")
    folder = _senteval(data_dir) / "STS" / f"{year}-en-test"
    s1: list[str] = []
    s2: list[str] = []
    gold: list[float] = []
    files: list[Path] = []
    for subset in STS_YEAR_SUBSETS[year]:
        inp = _require(folder / f"STS.input.{subset}.txt", data_dir)
        gs = _require(folder / f"STS.gs.{subset}.txt", data_dir)
        files += [inp, gs]
        in_lines = inp.read_text(encoding="utf-8").splitlines()
        gs_lines = gs.read_text(encoding="utf-8").splitlines()
        if len(in_lines) != len(gs_lines):
            raise DataError(f"{inp} has {len(in_lines)} lines but {gs} has {len(gs_lines)}; they must pair up "
                            f"line by line. {LAYOUT_HINT}")
        for lineno, (pair, score) in enumerate(zip(in_lines, gs_lines), 1):
            if not score.strip():
                continue  # unscored pair
            parts = pair.split("\t")
            if len(parts) < 2:
                raise DataError(f"{inp}:{lineno}: expected two tab-separated sentences. {LAYOUT_HINT}")
            s1.append(_norm(parts[0]))
            s2.append(_norm(parts[1]))
            gold.append(float(score))
    return StsData(year, "test", s1, s2, np.asarray(gold, dtype=np.float64), files)


def read_stsb(data_dir: str | Path, split: str) -> StsData:
    """STS Benchmark ``sts-<split>.csv``: tab-separated, score in field 5, sentences in fields 6 and 7."""
    path = _require(_senteval(data_dir) / "STS" / "STSBenchmark" / f"sts-{split}.csv", data_dir)
    s1, s2, gold = [], [], []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 7:
            raise DataError(f"{path}:{lineno}: expected at least 7 tab-separated fields. {LAYOUT_HINT}")
        gold.append(float(parts[4]))
        s1.append(_norm(parts[5]))
        s2.append(_norm(parts[6]))
    return StsData("STSBenchmark", split, s1, s2, np.asarray(gold, dtype=np.float64), [path])


SICK_FILES = {"train": "SICK_train.txt", "dev": "SICK_trial.txt", "test": "SICK_test_annotated.txt"}


def read_sick(data_dir: str | Path, split: str) -> StsData:
    """SICK relatedness: header line, then pair_ID, sentence_A, sentence_B, relatedness_score, ... (tab-separated).
    Splits: train, dev (= ``SICK_trial.txt``), test (= ``SICK_test_annotated.txt``)."""
    path = _require(_senteval(data_dir) / "SICK" / SICK_FILES[split], data_dir)
    lines = path.read_text(encoding="utf-8").splitlines()
    s1, s2, gold = [], [], []
    for lineno, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 4:
            raise DataError(f"{path}:{lineno}: expected pair_ID, sentence_A, sentence_B, relatedness_score "
                            f"tab-separated. {LAYOUT_HINT}")
        s1.append(_norm(parts[1]))
        s2.append(_norm(parts[2]))
        gold.append(float(parts[3]))
    return StsData("SICKRelatedness", split, s1, s2, np.asarray(gold, dtype=np.float64), [path])


def read_sts_test(data_dir: str | Path, task: str) -> StsData:
    """One of the seven SentEval-protocol test sets, by name (``STS_TEST_TASKS``)."""
    if task in STS_YEAR_SUBSETS:
        return read_sts_year(data_dir, task)
    if task == "STSBenchmark":
        return read_stsb(data_dir, "test")
    if task == "SICKRelatedness":
        return read_sick(data_dir, "test")
    raise ValueError(f"unknown STS task {task!r}; known: {', '.join(STS_TEST_TASKS)}")


def _truncate(pairs: Pairs, max_pairs: int | None) -> Pairs:
    if max_pairs is None:
        return pairs
    s1, s2, gold = pairs
    return s1[:max_pairs], s2[:max_pairs], gold[:max_pairs]


def load_sts_dev(data_dir: str | Path, max_pairs: int | None = None) -> dict[str, Pairs]:
    """The dev sets used for model selection: ``{"stsb_dev": (s1, s2, gold), "sickr_dev": (s1, s2, gold)}``
    (STS-B ``sts-dev.csv``, 1,500 pairs; SICK ``SICK_trial.txt``, 500 pairs), optionally the first
    ``max_pairs`` of each (a cheap signal for frequent checks)."""
    return {
        "stsb_dev": _truncate(read_stsb(data_dir, "dev").pairs, max_pairs),
        "sickr_dev": _truncate(read_sick(data_dir, "dev").pairs, max_pairs),
    }


def load_sts_test(data_dir: str | Path) -> dict[str, Pairs]:
    """The seven SentEval-protocol test sets: ``{"STS12": (s1, s2, gold), …, "SICKRelatedness": …}``."""
    return {task: read_sts_test(data_dir, task).pairs for task in STS_TEST_TASKS}


def spearman_cosine(emb1: np.ndarray, emb2: np.ndarray, gold: np.ndarray) -> float:
    """``100 * spearman(cos(emb1_i, emb2_i), gold_i)``: the SentEval STS score of one evaluation set."""
    gold = np.asarray(gold, dtype=np.float64)
    sims = cosine_rows(np.asarray(emb1, dtype=np.float64), np.asarray(emb2, dtype=np.float64))
    if len(gold) != len(sims):
        raise ValueError(f"{len(sims)} embedding pairs but {len(gold)} gold scores")
    if len(gold) < 2:
        raise ValueError("a Spearman correlation needs at least two pairs")
    return float(100.0 * spearmanr(sims, gold).statistic)
