"""The SentEval benchmark files below ``<data_dir>/senteval``: readers for the STS sets and the transfer tasks
(what `syncse data fetch` writes and checks, what evaluation and training's dev scoring read). Pure: no Ray.

STS, below ``<data_dir>/senteval``::

    STS/STS12-en-test … STS16-en-test/STS.input.<subset>.txt   two tab-separated sentences a line
                                       /STS.gs.<subset>.txt     gold score a line (blank: unscored)
    STS/STSBenchmark/sts-{train,dev,test}.csv                   tab-separated; score field 5, sentences 6 and 7
    SICK/SICK_{train,trial,test_annotated}.txt                  header; sentence_A, sentence_B, relatedness_score

Sentences are whitespace-normalised (SentEval splits on whitespace and the SimCSE batcher joins with one space);
the files are already tokenised and lower-cased. Pairs whose gold line is blank are unscored and dropped.

Transfer tasks (SentEval's ``data/downstream`` layout, next to ``STS/``; the protocol of each is in
`syncse_ray.eval.transfer`)::

    MR/rt-polarity.{pos,neg}   CR/custrev.{pos,neg}   SUBJ/subj.{objective,subjective}   MPQA/mpqa.{pos,neg}
    SST/binary/sentiment-{train,dev,test}   TREC/{train_5500,TREC_10}.label   MRPC/msr_paraphrase_{train,test}.txt

Binary files hold one sentence a line (latin-1); SST lines are ``sentence<TAB>label``; TREC lines are
``COARSE:fine question`` (the coarse label of 6 is the class); MRPC is tab-separated with a header, label in
field 1 and the sentences in fields 4 and 5.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from syncse_ray.data.datadir import MissingDataError, fetch_command, missing_data
from syncse_ray.errors import SyncseError

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


# -- transfer tasks

TRANSFER_TASKS = ("MR", "CR", "SUBJ", "MPQA", "SST2", "TREC", "MRPC")
TASK_DIRS = {"MR": "MR", "CR": "CR", "SUBJ": "SUBJ", "MPQA": "MPQA", "SST2": "SST/binary", "TREC": "TREC",
             "MRPC": "MRPC"}
TREC_CLASSES = ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")
TRANSFER_LAYOUT = ("SentEval's data/downstream layout below <data_dir>/senteval: MR/rt-polarity.{pos,neg}, "
                   "CR/custrev.{pos,neg}, SUBJ/subj.{objective,subjective}, MPQA/mpqa.{pos,neg}, "
                   "SST/binary/sentiment-{train,dev,test}, TREC/{train_5500,TREC_10}.label, "
                   "MRPC/msr_paraphrase_{train,test}.txt")


@dataclass
class TransferData:
    """Sentences (one list per text field: one for single-sentence tasks, two for MRPC) and labels per split.
    Splits: ``all`` (CV tasks), or ``train``/``test`` and optionally ``dev``."""

    task: str
    texts: dict[str, list[list[str]]]
    labels: dict[str, np.ndarray]
    files: list[Path]

    def fingerprint(self) -> str:
        return files_fingerprint(self.files)


class TransferSkipped(Exception):
    """A transfer task's data folder is absent; the run goes on without it."""


def _lines(path: Path, encoding: str) -> list[str]:
    if not path.is_file():
        raise DataError(f"missing file {path}; expected {TRANSFER_LAYOUT}")
    return [line.strip() for line in path.read_text(encoding=encoding).splitlines() if line.strip()]


def _binary(folder: Path, task: str, neg_name: str, pos_name: str) -> TransferData:
    neg = [_norm(line) for line in _lines(folder / neg_name, "latin-1")]
    pos = [_norm(line) for line in _lines(folder / pos_name, "latin-1")]
    labels = np.array([0] * len(neg) + [1] * len(pos))
    return TransferData(task, {"all": [neg + pos]}, {"all": labels}, [folder / neg_name, folder / pos_name])


def _sst(folder: Path) -> TransferData:
    texts, labels, files = {}, {}, []
    for split in ("train", "dev", "test"):
        path = folder / f"sentiment-{split}"
        rows = [line.rsplit("\t", 1) for line in _lines(path, "utf-8")]
        if any(len(r) != 2 for r in rows):
            raise DataError(f"{path}: expected 'sentence<TAB>label' lines; expected {TRANSFER_LAYOUT}")
        texts[split] = [[_norm(r[0]) for r in rows]]
        labels[split] = np.array([int(r[1]) for r in rows])
        files.append(path)
    return TransferData("SST2", texts, labels, files)


def _trec(folder: Path) -> TransferData:
    texts, labels, files = {}, {}, []
    for split, name in (("train", "train_5500.label"), ("test", "TREC_10.label")):
        path = folder / name
        sents, ys = [], []
        for line in _lines(path, "latin-1"):
            coarse, _, rest = line.partition(":")
            question = rest.split(" ", 1)[1] if " " in rest else ""
            if coarse not in TREC_CLASSES or not question:
                raise DataError(f"{path}: expected 'COARSE:fine question' lines with COARSE in "
                                f"{', '.join(TREC_CLASSES)}, got {line[:60]!r}")
            sents.append(_norm(question))
            ys.append(TREC_CLASSES.index(coarse))
        texts[split], labels[split] = [sents], np.array(ys)
        files.append(path)
    return TransferData("TREC", texts, labels, files)


def _mrpc(folder: Path) -> TransferData:
    texts, labels, files = {}, {}, []
    for split in ("train", "test"):
        path = folder / f"msr_paraphrase_{split}.txt"
        if not path.is_file():
            raise DataError(f"missing file {path}; expected {TRANSFER_LAYOUT}")
        rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()[1:] if line.strip()]
        if any(len(r) < 5 for r in rows):
            raise DataError(f"{path}: expected a header, then Quality, #1 ID, #2 ID, #1 String, #2 String "
                            f"tab-separated")
        texts[split] = [[_norm(r[3]) for r in rows], [_norm(r[4]) for r in rows]]
        labels[split] = np.array([int(r[0]) for r in rows])
        files.append(path)
    return TransferData("MRPC", texts, labels, files)


READERS: dict[str, Callable[[Path], TransferData]] = {
    "MR": lambda f: _binary(f, "MR", "rt-polarity.neg", "rt-polarity.pos"),
    "CR": lambda f: _binary(f, "CR", "custrev.neg", "custrev.pos"),
    "SUBJ": lambda f: _binary(f, "SUBJ", "subj.objective", "subj.subjective"),
    "MPQA": lambda f: _binary(f, "MPQA", "mpqa.neg", "mpqa.pos"),
    "SST2": _sst,
    "TREC": _trec,
    "MRPC": _mrpc,
}


def read_transfer(data_dir: str | Path, task: str) -> TransferData:
    """Read one transfer task; ``TransferSkipped`` when its folder is absent, ``DataError`` for a missing file."""
    if task not in READERS:
        raise ValueError(f"unknown transfer task {task!r}; known: {', '.join(TRANSFER_TASKS)}")
    folder = Path(data_dir) / "senteval" / TASK_DIRS[task]
    if not folder.is_dir():
        raise TransferSkipped(f"transfer task {task} skipped: {folder} does not exist (expected {TRANSFER_LAYOUT}; "
                              f"run: {fetch_command(data_dir, '--transfer')})")
    return READERS[task](folder)
