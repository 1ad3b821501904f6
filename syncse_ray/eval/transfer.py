"""SentEval transfer tasks: a logistic-regression probe on frozen sentence embeddings. Pure: numpy + scikit-learn.

Tasks (their files, in SentEval's ``data/downstream`` layout below ``<data_dir>/senteval``, are read by
`syncse_ray.data.senteval`):

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

An MRPC pair's feature is ``[|u - v|, u * v]``.

The probe: scikit-learn ``LogisticRegression`` (L2; Newton-Cholesky for two classes, lbfgs for more: `solver_for`)
on the raw embeddings, the inverse regularisation strength ``C`` chosen from ``2^-2 … 2^3`` (SentEval's grid for
its scikit-learn probe) by the dev split or by an inner stratified k-fold. For CV tasks the accuracy is the mean
over the outer stratified 10 folds, each fold choosing its own ``C`` on its training part. Scores are accuracy
×100; the average is over the tasks run. A task whose folder is absent is skipped (with a message); a folder with a
missing file is an error.

The fits are independent and each is seeded, so they run in parallel (joblib processes, one BLAS thread each,
``n_jobs`` of them: by default every core this process may use) with the same result as one after another: a CV
task is 10 outer folds × (6 C × 10 inner folds + 1) = 610 fits, the probe's cost, not the encoder's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from syncse_ray.data.senteval import TransferData

C_GRID = tuple(2.0 ** t for t in range(-2, 4))


def solver_for(n_classes: int) -> str:
    """Two classes: Newton steps with a Cholesky solve of the d × d Hessian converge in 5–10 iterations whatever the
    raw embeddings' scaling, where lbfgs took 300–2,000 (and stopped at its cap on MRPC's pair features) — 5–10×
    faster, and the optimum itself. More classes (TREC's 6): that Hessian is (d·k)², and lbfgs is the faster one."""
    return "newton-cholesky" if n_classes == 2 else "lbfgs"


def _fit(x: np.ndarray, y: np.ndarray, c: float, seed: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, solver=solver_for(len(np.unique(y))), max_iter=2000, random_state=seed).fit(x, y)


def _folds(y: np.ndarray, k: int, seed: int):
    from sklearn.model_selection import StratifiedKFold

    # Never more folds than the rarest class has members (tiny hand-written sets), never fewer than 2.
    k = max(2, min(k, int(np.bincount(y).min())))
    return StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)


def _parallel(n_jobs: int):
    from joblib import Parallel

    return Parallel(n_jobs=n_jobs, backend="loky" if n_jobs > 1 else "sequential")


def _accuracy(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, y_te: np.ndarray, c: float, seed: int) -> float:
    return float((_fit(x_tr, y_tr, c, seed).predict(x_te) == y_te).mean())


def _fold_accuracy(x: np.ndarray, y: np.ndarray, tr: np.ndarray, va: np.ndarray, c: float, seed: int) -> float:
    return _accuracy(x[tr], y[tr], x[va], y[va], c, seed)


def select_c(x: np.ndarray, y: np.ndarray, *, kfold: int, seed: int, n_jobs: int = 1) -> float:
    """The ``C`` of ``C_GRID`` with the best mean accuracy over a stratified k-fold of (x, y); ties: smaller C."""
    from joblib import delayed

    folds = list(_folds(y, kfold, seed))
    accs = _parallel(n_jobs)(delayed(_fold_accuracy)(x, y, tr, va, c, seed) for c in C_GRID for tr, va in folds)
    means = [np.mean(accs[i * len(folds):(i + 1) * len(folds)]) for i in range(len(C_GRID))]
    return C_GRID[int(np.argmax(means))]


def _outer_fold_accuracy(x: np.ndarray, y: np.ndarray, tr: np.ndarray, te: np.ndarray, kfold: int,
                         seed: int) -> float:
    """One outer fold of a CV task: C chosen on its training part (inner k-fold), then scored on its test part."""
    return _fold_accuracy(x, y, tr, te, select_c(x[tr], y[tr], kfold=kfold, seed=seed), seed)


def probe_accuracy(features: dict[str, np.ndarray], labels: dict[str, np.ndarray], *, kfold: int = 10,
                   seed: int = 1111, n_jobs: int | None = None) -> float:
    """Accuracy ×100 of the logistic-regression probe under the split's protocol (module docstring); `n_jobs`
    processes (None: every usable core)."""
    from threadpoolctl import threadpool_limits

    from syncse_ray.hardware import usable_cores

    # Hundreds of small fits: one BLAS thread each is much faster than oversubscribed threads on a busy machine.
    with threadpool_limits(limits=1):
        return _probe_accuracy(features, labels, kfold=kfold, seed=seed, n_jobs=n_jobs or usable_cores())


def _probe_accuracy(features: dict[str, np.ndarray], labels: dict[str, np.ndarray], *, kfold: int,
                    seed: int, n_jobs: int) -> float:
    from joblib import delayed

    if "all" in features:
        x, y = features["all"], labels["all"]
        accs = _parallel(n_jobs)(delayed(_outer_fold_accuracy)(x, y, tr, te, kfold, seed)
                                 for tr, te in _folds(y, kfold, seed))
        return 100.0 * float(np.mean(accs))
    x_tr, y_tr = features["train"], labels["train"]
    if "dev" in features:
        accs = _parallel(n_jobs)(delayed(_accuracy)(x_tr, y_tr, features["dev"], labels["dev"], c, seed)
                                 for c in C_GRID)
        c = C_GRID[int(np.argmax(accs))]
    else:
        c = select_c(x_tr, y_tr, kfold=kfold, seed=seed, n_jobs=n_jobs)
    return 100.0 * _accuracy(x_tr, y_tr, features["test"], labels["test"], c, seed)


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
