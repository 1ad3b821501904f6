"""Choosing a triplet from judged candidates. Pure Python: no Ray, no model.

For one anchor the LLM wrote k positive and k hard-negative candidates. Each candidate has passed or failed
the exact filters (`filters.candidate_drop_reason`) and carries the judges' scores: ``sim`` = cos(anchor,
candidate) under the embedding judge, ``llm`` = the LLM judge's P(yes) that the candidate follows from
(positive) or contradicts (negative) the anchor. Selection, with thresholds from `JudgeConfig`:

1. Positive: among candidates that pass the filters, ``min_positive <= sim < max_positive`` (related, but not a
   near-copy) and ``llm >= llm_min_entailment``; the one with the highest sim (highest llm if there is no sim).
2. Hard negative: among candidates that pass the filters and differ from the positive,
   ``sim >= min_negative`` (still hard) and ``llm >= llm_min_contradiction``, the one *most similar* to the
   anchor while ``sim <= s_pos - margin`` and ``sim <= relative_margin * s_pos`` (NV-Retriever's TopK-PercPos:
   a negative scoring near the positive is likely a false negative).
3. No valid pair: the row is dropped with the reason of the first step that ran out of candidates.

A judge that is off leaves its score None, and its conditions do not apply (judge ``none``: the first
candidate that passes the filters, for each kind).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from syncse_ray.config.synth import JudgeConfig
from syncse_ray.synth.filters import POSITIVE_EQUALS_NEGATIVE, normalize

POSITIVE_UNRELATED = "positive_unrelated"
POSITIVE_NEAR_COPY = "positive_near_copy"
POSITIVE_NOT_ENTAILED = "positive_not_entailed"
NEGATIVE_UNRELATED = "negative_unrelated"
NEGATIVE_NOT_CONTRADICTING = "negative_not_contradicting"
INVERTED = "inverted"  # every remaining negative scores too close to (or above) the chosen positive


@dataclass
class Candidate:
    """One answer of the LLM for an anchor: its text, why the exact filters refused it (None: passed), the
    judges' scores and, after selection, why it was not chosen."""

    kind: str
    index: int
    text: str
    reason: str | None = None
    sim: float | None = None
    llm: float | None = None


@dataclass
class Selection:
    positive: Candidate | None
    negative: Candidate | None
    reason: str | None  # None: a triplet was selected


def _most_common_reason(candidates: list[Candidate]) -> str:
    reasons = Counter(c.reason for c in candidates if c.reason)
    return reasons.most_common(1)[0][0] if reasons else POSITIVE_UNRELATED


def _narrow(pool: list[Candidate], keep, reason: str, failed: list[str]) -> list[Candidate]:
    """`pool` filtered by `keep`; records `reason` if that empties a non-empty pool."""
    kept = [c for c in pool if keep(c)]
    if pool and not kept:
        failed.append(reason)
    return kept


def _best(pool: list[Candidate], failed: list[str]) -> tuple[Candidate | None, str | None]:
    """The highest-scoring candidate left (embedding score first, else the LLM's; the first one if unjudged),
    or the reason of the check that emptied the pool."""
    if not pool:
        return None, failed[0]
    if all(c.sim is None and c.llm is None for c in pool):
        return pool[0], None
    return max(pool, key=lambda c: (c.sim if c.sim is not None else c.llm, -c.index)), None


def select_positive(positives: list[Candidate], t: JudgeConfig) -> tuple[Candidate | None, str | None]:
    pool = [c for c in positives if c.reason is None]
    if not pool:
        return None, _most_common_reason(positives)
    failed: list[str] = []
    pool = _narrow(pool, lambda c: c.sim is None or c.sim < t.max_positive, POSITIVE_NEAR_COPY, failed)
    pool = _narrow(pool, lambda c: c.sim is None or c.sim >= t.min_positive, POSITIVE_UNRELATED, failed)
    pool = _narrow(pool, lambda c: c.llm is None or c.llm >= t.llm_min_entailment, POSITIVE_NOT_ENTAILED, failed)
    return _best(pool, failed)


def select_negative(negatives: list[Candidate], positive: Candidate,
                    t: JudgeConfig) -> tuple[Candidate | None, str | None]:
    pool = [c for c in negatives if c.reason is None]
    if not pool:
        return None, _most_common_reason(negatives) if negatives else NEGATIVE_UNRELATED
    failed: list[str] = []
    pool = _narrow(pool, lambda c: normalize(c.text) != normalize(positive.text), POSITIVE_EQUALS_NEGATIVE, failed)
    pool = _narrow(pool, lambda c: c.llm is None or c.llm >= t.llm_min_contradiction, NEGATIVE_NOT_CONTRADICTING,
                   failed)
    if positive.sim is not None:
        bound = min(positive.sim - t.margin, positive.sim * t.relative_margin)
        pool = _narrow(pool, lambda c: c.sim is None or c.sim <= bound, INVERTED, failed)
    pool = _narrow(pool, lambda c: c.sim is None or c.sim >= t.min_negative, NEGATIVE_UNRELATED, failed)
    return _best(pool, failed)


def select_triplet(positives: list[Candidate], negatives: list[Candidate], t: JudgeConfig) -> Selection:
    """The best positive and the hardest valid negative for one anchor, or the reason there is none."""
    positive, reason = select_positive(positives, t)
    if positive is None:
        return Selection(None, None, reason)
    negative, reason = select_negative(negatives, positive, t)
    return Selection(positive, negative, reason)
