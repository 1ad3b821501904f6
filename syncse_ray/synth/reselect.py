"""Round r > 1: choosing triplets again with the encoder round r-1 trained. Pure Python and numpy: no Ray.

The trained encoder re-scores round 1's candidates (same texts, same exact-filter verdicts): a better encoder
is a better annotator (InfoCSE), and re-scoring costs no LLM tokens and keeps the premises and candidates fixed,
so a change between rounds is the judge's alone. Its cosines live on another scale than the round-1 judge's, so
the absolute thresholds move by quantile (`transfer_thresholds`): the same share of candidates passes each check,
and which ones is the new encoder's call.

Mining (`pipeline.next_round.mine: replace`): when no LLM negative of a row survives, the row's nearest
neighbours in the round's sentence pool (anchors and every candidate that passed the filters; the row's own
candidates and copies of its anchor excluded) are offered to the same negative rule as the LLM's
(`selection.select_negative`: at most positive - margin and relative_margin * positive, i.e. NV-Retriever's
TopK-PercPos, and at least min_negative), in the mining encoder's space.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from syncse_ray.config.synth import JudgeConfig
from syncse_ray.synth.filters import normalize
from syncse_ray.synth.prompts import HARD_NEGATIVE
from syncse_ray.synth.selection import Candidate, Selection, select_negative, select_triplet

MINED_INDEX = 10_000  # mined candidates are numbered from here (the LLM's are 0..k-1)


def transfer_thresholds(reference: np.ndarray, scores: np.ndarray, judge: JudgeConfig) -> JudgeConfig:
    """`judge`'s thresholds for an encoder whose cosines on the same candidates are `scores`, where the judge's
    own were `reference`: each absolute threshold moves to the same quantile (a threshold that 20% of the
    reference scores fall below becomes the 20th percentile of the new scores); the margin scales with the
    spread (standard deviation); the relative margin, a ratio, stays."""
    reference, scores = np.asarray(reference, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    if reference.size == 0 or scores.size == 0:
        raise ValueError("no scored candidates to carry the thresholds over with")

    def moved(threshold: float) -> float:
        return float(np.quantile(scores, float(np.mean(reference < threshold))))

    spread = float(scores.std() / reference.std()) if reference.std() > 0 else 1.0
    low, high = moved(judge.min_positive), moved(judge.max_positive)
    if high <= low:  # every candidate on one side: keep the check open rather than refuse everything
        high = min(1.0, low + 1e-6)
    return judge.model_copy(update={"min_positive": low, "max_positive": high,
                                    "min_negative": moved(judge.min_negative),
                                    "margin": min(2.0, judge.margin * spread)})


@dataclass
class Mining:
    """What mining needs for one anchor, all under the mining encoder: its nearest pool sentences (text,
    cosine), best first; the thresholds in that encoder's space; cos(anchor, positive candidate i) by index."""

    neighbours: list[tuple[str, float]]
    judge: JudgeConfig
    positive_sims: dict[int, float] = field(default_factory=dict)
    top_k: int | None = None  # how many neighbours to offer, after the exclusions


@dataclass
class RoundPick:
    selection: Selection
    mined: bool = False  # the negative is a mined pool sentence, not one the LLM wrote for this anchor


def mined_candidates(neighbours: Iterable[tuple[str, float]], exclude: Iterable[str]) -> list[Candidate]:
    """Neighbours as hard-negative candidates, minus those whose normalised text is in `exclude`."""
    banned = {normalize(t) for t in exclude}
    out, seen = [], set()
    for text, score in neighbours:
        key = normalize(text)
        if key in banned or key in seen:
            continue
        seen.add(key)
        out.append(Candidate(HARD_NEGATIVE, MINED_INDEX + len(out), text, sim=float(score)))
    return out


def select_round(anchor: str, positives: list[Candidate], negatives: list[Candidate], judge: JudgeConfig,
                 mining: Mining | None = None) -> RoundPick:
    """Round r's triplet for one anchor: `selection.select_triplet` over the (re-scored) candidates; with
    `mining`, a row that has a positive but no valid LLM negative takes the hardest valid mined neighbour."""
    pick = select_triplet(positives, negatives, judge)
    if mining is None or pick.positive is None or pick.negative is not None:
        return RoundPick(pick)
    pool = mined_candidates(mining.neighbours, [anchor, *(c.text for c in positives + negatives)])[:mining.top_k]
    positive = replace(pick.positive, sim=mining.positive_sims.get(pick.positive.index))
    if positive.sim is None:
        return RoundPick(pick)
    negative, _ = select_negative(pool, positive, mining.judge)
    if negative is None:
        return RoundPick(pick)
    return RoundPick(Selection(pick.positive, negative, None), mined=True)


def judge_agrees(pos_score: float | None, neg_score: float | None) -> bool | None:
    """Whether a judge scores a triplet's positive strictly above its negative (a tie is no agreement); None when
    it did not score both (None or NaN)."""
    if pos_score is None or neg_score is None or np.isnan(pos_score) or np.isnan(neg_score):
        return None
    return bool(pos_score > neg_score)


def judge_agreement(verdicts: Iterable[bool | None]) -> dict:
    """`round_1_judge_agreement`: the share of True among the verdicts that are not None (`judge_agrees`), over
    `round_1_judged` of them; when none was judged the agreement is None and `round_1_judge_agreement_note` says
    why (the report shows "–")."""
    judged = [bool(v) for v in verdicts if v is not None]
    out = {"round_1_judge_agreement": sum(judged) / len(judged) if judged else None, "round_1_judged": len(judged)}
    if not judged:
        out["round_1_judge_agreement_note"] = ("round 1's judge scored no kept triplet's positive and negative "
                                               "(no kept triplets, or only mined negatives / no embedding scores)")
    return out


def round_1_agreement(pos_scores: Iterable[float | None], neg_scores: Iterable[float | None]) -> dict:
    """Round 1's judge on round 1's own kept triplets (their pos_score / neg_score): measured, not assumed. The
    selection rule keeps a negative at most min(positive - margin, relative_margin * positive), which is below
    the positive only when margin > 0 or relative_margin < 1 with a positive positive score, and the config
    requires neither (margin 0, relative_margin 1 keeps ties)."""
    return judge_agreement(judge_agrees(p, n) for p, n in zip(pos_scores, neg_scores, strict=True))


def round_stats(rows: list[dict]) -> dict:
    """Counts for one round's selection from its result rows (`reason` None: kept; `negative_source`;
    `same_as_round_1`: the kept row chose round 1's (positive, negative); `round_1_judge_agrees`: round 1's judge
    scores its positive above its negative, None when it did not score both, as for a mined negative)."""
    kept = [r for r in rows if r["reason"] is None]
    return {"anchors": len(rows), "kept": len(kept), "dropped": len(rows) - len(kept),
            "reasons": dict(Counter(r["reason"] for r in rows if r["reason"])),
            "mined": sum(r.get("negative_source") == "mined" for r in kept),
            "same_as_round_1": sum(bool(r.get("same_as_round_1")) for r in kept),
            **judge_agreement(r.get("round_1_judge_agrees") for r in kept)}
