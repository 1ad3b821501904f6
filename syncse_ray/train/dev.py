"""Dev scoring during training: STS-B dev and SICK-R dev (SICK trial), split over the workers. No Ray.

Each worker encodes an equal-sized slice of every dev set's sentences (the last slice padded by repetition, so
every worker runs the same number of forward passes — ZeRO-3 gathers parameters collectively in each one), the
slices are all-gathered, and every worker computes the same scores with the evaluation stage's metric:

    score(set) = 100 · spearman(cos(e(s1_i), e(s2_i)), gold_i)      (syncse_ray.eval.sts.spearman_cosine)
    dev_score  = mean over {stsb_dev, sickr_dev}
"""

from __future__ import annotations

import math

import numpy as np
import torch.distributed as dist

from syncse_ray.eval.sts import spearman_cosine

DevSets = dict[str, tuple[list[str], list[str], list[float]]]


def distributed_encode(model, tokenizer, sentences: list[str], max_seq_length: int, batch_size: int) -> np.ndarray:
    """Encode `sentences` with `model.encode`, each worker one slice; every worker gets all vectors."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return model.encode(sentences, tokenizer, max_seq_length, batch_size)
    world, rank = dist.get_world_size(), dist.get_rank()
    per_worker = math.ceil(len(sentences) / world)
    mine = sentences[rank * per_worker:(rank + 1) * per_worker]
    padded = mine + [sentences[0]] * (per_worker - len(mine))
    vectors = model.encode(padded, tokenizer, max_seq_length, batch_size)[:len(mine)]
    gathered: list = [None] * world
    dist.all_gather_object(gathered, vectors)
    return np.concatenate(gathered)[:len(sentences)]


def dev_scores(model, tokenizer, dev: DevSets, max_seq_length: int, batch_size: int = 64) -> dict[str, float]:
    """{"stsb_dev": …, "sickr_dev": …, "dev_score": their mean}, each 100 × Spearman of cosine."""
    scores = {}
    for name, (s1, s2, gold) in dev.items():
        vectors = distributed_encode(model, tokenizer, list(s1) + list(s2), max_seq_length, batch_size)
        scores[name] = spearman_cosine(vectors[:len(s1)], vectors[len(s1):], np.asarray(gold))
    scores["dev_score"] = float(np.mean(list(scores.values())))
    return scores
