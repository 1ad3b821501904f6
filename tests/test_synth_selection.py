"""Selection of a triplet from judged candidates, and decontamination. Pure: no Ray, no model."""

from __future__ import annotations

import pytest

from syncse_ray.config.synth import JudgeConfig
from syncse_ray.synth import filters
from syncse_ray.synth import selection as sel
from syncse_ray.synth.decontaminate import DecontaminationError, EvalOverlapIndex, eval_sentences
from syncse_ray.synth.judge import yes_probability
from syncse_ray.synth.selection import Candidate, select_triplet

T = JudgeConfig(min_positive=0.45, max_positive=0.97, min_negative=0.2, margin=0.05, relative_margin=0.95)


def pos(i, sim=None, llm=None, reason=None, text=None):
    return Candidate("positive", i, text or f"positive {i}", reason, sim, llm)


def neg(i, sim=None, llm=None, reason=None, text=None):
    return Candidate("hard_negative", i, text or f"negative {i}", reason, sim, llm)


def test_best_positive_and_hardest_negative_below_the_margins():
    got = select_triplet([pos(0, 0.60), pos(1, 0.90), pos(2, 0.99)],
                         [neg(0, 0.30), neg(1, 0.84), neg(2, 0.86), neg(3, 0.95)], T)
    # 0.99 is a near-copy; 0.90 is the best positive. Bound = min(0.90 - 0.05, 0.90 * 0.95) = 0.85:
    # 0.86 and 0.95 are too close (likely false negatives); 0.84 is the hardest valid one.
    assert (got.positive.index, got.negative.index, got.reason) == (1, 1, None)


def test_relative_margin_binds_for_high_positive_scores():
    t = JudgeConfig(margin=0.01, relative_margin=0.9)
    got = select_triplet([pos(0, 0.9)], [neg(0, 0.85), neg(1, 0.80)], t)
    assert got.negative.index == 1  # 0.85 > 0.9 * 0.9 = 0.81


@pytest.mark.parametrize("positives, negatives, reason", [
    ([pos(0, 0.99), pos(1, 0.98)], [neg(0, 0.3)], sel.POSITIVE_NEAR_COPY),
    ([pos(0, 0.30), pos(1, 0.40)], [neg(0, 0.3)], sel.POSITIVE_UNRELATED),
    ([pos(0, 0.30), pos(1, 0.99)], [neg(0, 0.3)], sel.POSITIVE_UNRELATED),  # the check that emptied the pool
    ([pos(0, 0.70)], [neg(0, 0.69), neg(1, 0.90)], sel.INVERTED),
    ([pos(0, 0.70)], [neg(0, 0.10), neg(1, 0.15)], sel.NEGATIVE_UNRELATED),
    ([pos(0, 0.70)], [neg(0, 0.10), neg(1, 0.90)], sel.NEGATIVE_UNRELATED),
    ([pos(0, reason=filters.ANCHOR_COPY), pos(1, reason=filters.ANCHOR_COPY), pos(2, reason=filters.EMPTY)],
     [neg(0, 0.3)], filters.ANCHOR_COPY),
    ([pos(0, 0.8)], [neg(0, reason=filters.EVAL_OVERLAP)], filters.EVAL_OVERLAP),
    ([pos(0, 0.8, text="Same words.")], [neg(0, 0.5, text="same words")], filters.POSITIVE_EQUALS_NEGATIVE),
])
def test_drop_reasons(positives, negatives, reason):
    got = select_triplet(positives, negatives, T)
    assert got.reason == reason
    assert got.negative is None


def test_llm_scores_filter_and_rank():
    t = JudgeConfig(llm_min_entailment=0.5, llm_min_contradiction=0.5)
    got = select_triplet([pos(0, llm=0.2), pos(1, llm=0.7), pos(2, llm=0.9)], [neg(0, llm=0.4), neg(1, llm=0.8)], t)
    assert (got.positive.index, got.negative.index) == (2, 1)
    got = select_triplet([pos(0, llm=0.2)], [neg(0, llm=0.9)], t)
    assert got.reason == sel.POSITIVE_NOT_ENTAILED
    got = select_triplet([pos(0, llm=0.9)], [neg(0, llm=0.1)], t)
    assert got.reason == sel.NEGATIVE_NOT_CONTRADICTING


def test_no_judge_takes_the_first_candidates_that_pass_the_filters():
    got = select_triplet([pos(0, reason=filters.ANCHOR_COPY), pos(1), pos(2)], [neg(0), neg(1)], T)
    assert (got.positive.index, got.negative.index, got.reason) == (1, 0, None)


def test_thresholds_bad_ranges():
    with pytest.raises(ValueError, match="min_positive"):
        JudgeConfig(min_positive=0.9, max_positive=0.5)
    with pytest.raises(ValueError, match=r"margin\n  Input should be greater than or equal to 0"):
        JudgeConfig(margin=-0.1)
    with pytest.raises(ValueError, match=r"method\n  Input should be 'embedding', .*input_value='oracle'"):
        JudgeConfig(method="oracle")


def test_yes_probability_from_top_logprobs():
    import math

    assert yes_probability({"Yes": math.log(0.6), " yes": math.log(0.1), "No": math.log(0.3)}) == pytest.approx(0.7)
    assert yes_probability({"Maybe": -0.1}) == 0.5


def test_eval_overlap_exact_and_near():
    index = EvalOverlapIndex(["a man is playing a guitar .", "the cat sat on the mat near the door ."],
                             near_threshold=0.6)
    assert index.overlaps("A man is playing a guitar.")  # exact after normalisation
    assert index.overlaps("The cat sat on the mat near the door today.")  # near: 6 of 8 word 3-grams shared
    assert not index.overlaps("A woman is slicing an onion.")


def test_eval_overlap_on_the_real_eval_sets(data_dir):
    sentences, sources = eval_sentences(data_dir)
    assert {"STS12", "STS16", "STSBenchmark-test", "SICK-test"} <= set(sources)
    index = EvalOverlapIndex(sentences)
    stsb = (data_dir / "senteval/STS/STSBenchmark/sts-test.csv").read_text(encoding="utf-8").splitlines()
    assert all(index.overlaps(line.split("\t")[5].upper()) for line in stsb[:50])
    wiki = (data_dir / "seeds/wiki1m_sample.txt").read_text(encoding="utf-8").splitlines()[:300]
    assert sum(index.overlaps(s) for s in wiki) == 0


def test_decontamination_without_eval_sets_is_a_clear_error(tmp_path):
    with pytest.raises(DecontaminationError, match="decontamination.enabled=false"):
        EvalOverlapIndex.from_data_dir(tmp_path)
