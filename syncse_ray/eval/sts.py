"""SentEval-protocol semantic textual similarity (STS): the metric. Pure: numpy + scipy, no Ray.

Protocol (SentEval "all", as reported by SimCSE and SynCSE):

- STS12–STS16: every scored pair of a year's subsets is concatenated, and one Spearman rank correlation is taken
  between the cosine similarities of the two sentences' embeddings and the gold scores. Pairs whose gold line is
  blank are unscored and dropped. STS13 has no SMT subset (its input is not distributed).
- STS-B and SICK-R: the test split (STS-B ``sts-test.csv``, SICK ``SICK_test_annotated.txt``), cosine similarity,
  no trained regressor.
- Dev (model selection during training): STS-B ``sts-dev.csv`` and SICK ``SICK_trial.txt``.

Every score is ``100 * spearman(cos(e1_i, e2_i), gold_i)``. Sentences are whitespace-normalised (SentEval splits
on whitespace and the SimCSE batcher joins with one space); the files are already tokenised and lower-cased.

The readers of the files (and their layout) are `syncse_ray.data.senteval`.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from syncse_ray.models.vectors import cosine_rows


def spearman_cosine(emb1: np.ndarray, emb2: np.ndarray, gold: np.ndarray) -> float:
    """``100 * spearman(cos(emb1_i, emb2_i), gold_i)``: the SentEval STS score of one evaluation set."""
    gold = np.asarray(gold, dtype=np.float64)
    sims = cosine_rows(np.asarray(emb1, dtype=np.float64), np.asarray(emb2, dtype=np.float64))
    if len(gold) != len(sims):
        raise ValueError(f"{len(sims)} embedding pairs but {len(gold)} gold scores")
    if len(gold) < 2:
        raise ValueError("a Spearman correlation needs at least two pairs")
    return float(100.0 * spearmanr(sims, gold).statistic)
