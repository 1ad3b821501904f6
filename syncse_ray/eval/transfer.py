"""SentEval transfer tasks: a logistic-regression probe on frozen sentence embeddings. Pure: numpy + scikit-learn.

Tasks and files (SentEval's ``data/downstream`` layout, here below ``<data_dir>/senteval``, next to ``STS/``):

====== ================================================ ================================================
task   files                                            protocol
====== ================================================ ================================================
MR     MR/rt-polarity.{pos,neg}                         10-fold CV (no test split)
CR     CR/custrev.{pos,neg}                             10-fold CV
SUBJ   SUBJ/subj.{objective,subjective}                 10-fold CV
MPQA   MPQA/mpqa.{pos,neg}                              10-fold CV
SST2   SST/binary/sentiment-{train,dev,test}            C chosen on dev, accuracy on test
TREC   TREC/train_5500.label, TREC/TREC_10.label        C chosen by 10-fold CV on train, accuracy on test
MRPC   MRPC/msr_paraphrase_{train,test}.txt             C chosen by 10-fold CV on train, accuracy on test
====== ================================================ ================================================

Binary files hold one sentence a line (latin-1); SST lines are ``sentence<TAB>label``; TREC lines are
``COARSE:fine question`` (the coarse label of 6 is the class); MRPC is tab-separated with a header, label in
field 1 and the sentences in fields 4 and 5, and a pair's feature is ``[|u - v|, u * v]``.

The probe: scikit-learn ``LogisticRegression`` (L2, lbfgs) on the raw embeddings, the inverse regularisation
strength ``C`` chosen from ``2^-2 … 2^3`` (SentEval's grid for its scikit-learn probe) by the dev split or by an
inner stratified k-fold. For CV tasks the accuracy is the mean over the outer stratified 10 folds, each fold
choosing its own ``C`` on its training part. Scores are accuracy ×100; the average is over the tasks run.
A task whose folder is absent is skipped (with a message); a folder with a missing file is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from syncse_ray.data.datadir import fetch_command
from syncse_ray.eval.sts import DataError, files_fingerprint

C_GRID = tuple(2.0 ** t for t in range(-2, 4))
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


def _norm(text: str) -> str:
    return " ".join(text.split())


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


def _fit(x: np.ndarray, y: np.ndarray, c: float, seed: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x, y)


def _folds(y: np.ndarray, k: int, seed: int):
    from sklearn.model_selection import StratifiedKFold

    # Never more folds than the rarest class has members (tiny hand-written sets), never fewer than 2.
    k = max(2, min(k, int(np.bincount(y).min())))
    return StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)


def select_c(x: np.ndarray, y: np.ndarray, *, kfold: int, seed: int) -> float:
    """The ``C`` of ``C_GRID`` with the best mean accuracy over a stratified k-fold of (x, y); ties: smaller C."""
    folds = list(_folds(y, kfold, seed))
    accs = [np.mean([(_fit(x[tr], y[tr], c, seed).predict(x[va]) == y[va]).mean() for tr, va in folds])
            for c in C_GRID]
    return C_GRID[int(np.argmax(accs))]


def probe_accuracy(features: dict[str, np.ndarray], labels: dict[str, np.ndarray], *, kfold: int = 10,
                   seed: int = 1111) -> float:
    """Accuracy ×100 of the logistic-regression probe under the split's protocol (module docstring)."""
    from threadpoolctl import threadpool_limits

    # Hundreds of small fits: one BLAS thread each is much faster than oversubscribed threads on a busy machine.
    with threadpool_limits(limits=1):
        return _probe_accuracy(features, labels, kfold=kfold, seed=seed)


def _probe_accuracy(features: dict[str, np.ndarray], labels: dict[str, np.ndarray], *, kfold: int,
                    seed: int) -> float:
    if "all" in features:
        x, y = features["all"], labels["all"]
        accs = []
        for tr, te in _folds(y, kfold, seed):
            c = select_c(x[tr], y[tr], kfold=kfold, seed=seed)
            accs.append((_fit(x[tr], y[tr], c, seed).predict(x[te]) == y[te]).mean())
        return 100.0 * float(np.mean(accs))
    x_tr, y_tr = features["train"], labels["train"]
    if "dev" in features:
        accs = [(_fit(x_tr, y_tr, c, seed).predict(features["dev"]) == labels["dev"]).mean() for c in C_GRID]
        c = C_GRID[int(np.argmax(accs))]
    else:
        c = select_c(x_tr, y_tr, kfold=kfold, seed=seed)
    return 100.0 * float((_fit(x_tr, y_tr, c, seed).predict(features["test"]) == labels["test"]).mean())


def featurize(embed: Callable[[Sequence[str]], np.ndarray], data: TransferData) -> dict[str, np.ndarray]:
    """Embeddings per split: the sentence's embedding, or ``[|u - v|, u * v]`` for sentence pairs (MRPC)."""
    out = {}
    for split, fields in data.texts.items():
        if len(fields) == 1:
            out[split] = np.asarray(embed(fields[0]), dtype=np.float64)
        else:
            u = np.asarray(embed(fields[0]), dtype=np.float64)
            v = np.asarray(embed(fields[1]), dtype=np.float64)
            out[split] = np.concatenate([np.abs(u - v), u * v], axis=1)
    return out
