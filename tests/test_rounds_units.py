"""Rounds (pipeline.rounds > 1) without a cluster: threshold transfer, mining margins on a hand-built FAISS index,
early stop, the round configs and their validation."""

from __future__ import annotations

import numpy as np
import pytest

from syncse_ray.config import ConfigError, load_config
from syncse_ray.config.synth import JudgeConfig
from syncse_ray.pipeline.rounds import improved
from syncse_ray.synth.prompts import HARD_NEGATIVE, POSITIVE
from syncse_ray.synth.reselect import (
    MINED_INDEX,
    Mining,
    judge_agrees,
    mined_candidates,
    round_1_agreement,
    round_stats,
    select_round,
    transfer_thresholds,
)
from syncse_ray.synth.selection import INVERTED, Candidate

JUDGE = JudgeConfig()  # min_positive 0.45, max_positive 0.97, min_negative 0.07, margin 0.2, relative 0.95


def test_thresholds_move_by_quantile_and_margin_by_spread():
    rng = np.random.default_rng(0)
    reference = rng.uniform(-1, 1, 20_001)
    scores = 0.5 * reference + 0.3  # same order, another scale
    moved = transfer_thresholds(reference, scores, JUDGE)
    for name in ("min_positive", "max_positive", "min_negative"):
        assert getattr(moved, name) == pytest.approx(0.5 * getattr(JUDGE, name) + 0.3, abs=2e-3), name
    assert moved.margin == pytest.approx(0.5 * JUDGE.margin, rel=1e-6)
    assert moved.relative_margin == JUDGE.relative_margin
    # the same share of candidates passes each check under either judge
    for name in ("min_positive", "min_negative"):
        assert np.mean(scores >= getattr(moved, name)) == pytest.approx(np.mean(reference >= getattr(JUDGE, name)),
                                                                       abs=1e-3)
    with pytest.raises(ValueError, match="no scored candidates"):
        transfer_thresholds(np.array([]), scores, JUDGE)


def _unit(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_mining_on_a_hand_built_index_keeps_the_hardest_neighbour_inside_the_margins():
    """Anchor a, its positive at cos 0.8, so a negative must score <= min(0.8 - 0.2, 0.95 * 0.8) = 0.6 and
    >= 0.07. Pool neighbours at cos 0.95 (a paraphrase), 0.7 (too close: a likely false negative), 0.55 (valid,
    the hardest), 0.3 (valid), 0.0 (unrelated), plus the row's own LLM negative and a copy of the anchor, which
    are never mined."""
    import faiss

    def at(cos: float, side: int) -> np.ndarray:  # a unit vector at cosine `cos` from e0, in plane (e0, e_side)
        v = np.zeros(8, dtype=np.float32)
        v[0], v[side] = cos, np.sqrt(1 - cos**2)
        return v

    texts = ["a man rides a bike", "A man rides a bike!", "a person is cycling", "near paraphrase", "too close",
             "hardest valid", "easier valid", "unrelated", "the row's own negative"]
    vectors = np.stack([at(1.0, 1), at(1.0, 1), at(0.8, 1), at(0.95, 2), at(0.7, 3), at(0.55, 4), at(0.3, 5),
                        at(0.0, 6), at(0.5, 7)])
    index = faiss.IndexFlatIP(8)
    index.add(vectors)
    scores, ids = index.search(vectors[:1], len(texts))
    neighbours = [(texts[j], float(s)) for j, s in zip(ids[0], scores[0])]

    positives = [Candidate(POSITIVE, 0, "a person is cycling", sim=0.8)]
    # the LLM's negative scores above the positive: no valid LLM negative (inverted)
    negatives = [Candidate(HARD_NEGATIVE, 0, "the row's own negative", sim=0.85)]
    mining = Mining(neighbours, JUDGE, positive_sims={0: 0.8}, top_k=10)
    pick = select_round("a man rides a bike", positives, negatives, JUDGE, mining)
    assert pick.mined and pick.selection.reason is None
    assert pick.selection.negative.text == "hardest valid"
    assert pick.selection.negative.sim == pytest.approx(0.55, abs=1e-5)
    assert pick.selection.negative.index >= MINED_INDEX

    # without mining the row is dropped as inverted; with mining but only top_k=2 offered, nothing fits either
    assert select_round("a man rides a bike", positives, negatives, JUDGE).selection.reason == INVERTED
    short = Mining(neighbours, JUDGE, positive_sims={0: 0.8}, top_k=2)
    assert select_round("a man rides a bike", positives, negatives, JUDGE, short).selection.reason == INVERTED

    # a row whose LLM negative is valid keeps it: mining only replaces failures
    good = [Candidate(HARD_NEGATIVE, 0, "easier valid", sim=0.3)]
    kept = select_round("a man rides a bike", positives, good, JUDGE, mining)
    assert not kept.mined and kept.selection.negative.index == 0


def test_mined_candidates_exclude_the_anchor_its_candidates_and_repeats():
    mined = mined_candidates([("A dog runs.", 0.9), ("a dog runs", 0.9), ("A cat sleeps", 0.4),
                              ("a cat sleeps!", 0.4), ("A bird sings", 0.2)], ["a dog runs", "a bird sings"])
    assert [c.text for c in mined] == ["A cat sleeps"]
    assert mined[0].kind == HARD_NEGATIVE and mined[0].reason is None


def test_early_stop_needs_a_gain_over_the_best_earlier_round():
    assert improved([50.0], 0.0)
    assert improved([50.0, 50.5], 0.0)
    assert not improved([50.0, 50.5], 1.0)
    assert not improved([50.0, 52.0, 51.0], 0.0)  # compared with the best round, not the last
    assert improved([50.0, 40.0], None)  # None: every round runs


def test_round_stats_count_kept_mined_and_agreement():
    rows = [{"reason": None, "negative_source": "llm", "same_as_round_1": True, "round_1_judge_agrees": True},
            {"reason": None, "negative_source": "llm", "same_as_round_1": False, "round_1_judge_agrees": False},
            {"reason": None, "negative_source": "mined", "same_as_round_1": False, "round_1_judge_agrees": None},
            {"reason": INVERTED}]
    assert round_stats(rows) == {"anchors": 4, "kept": 3, "dropped": 1, "reasons": {INVERTED: 1}, "mined": 1,
                                 "same_as_round_1": 1, "round_1_judge_agreement": 0.5, "round_1_judged": 2}
    only_mined = round_stats([rows[2], rows[3]])
    assert only_mined["round_1_judge_agreement"] is None and only_mined["round_1_judged"] == 0
    assert "mined negatives" in only_mined["round_1_judge_agreement_note"]


def test_a_judge_agrees_only_when_it_scores_the_positive_strictly_higher():
    assert judge_agrees(0.8, 0.5) is True
    assert judge_agrees(0.6, 0.6) is False  # a tie: margin 0 and relative_margin 1 keep it
    assert judge_agrees(0.5, 0.7) is False
    assert judge_agrees(None, 0.2) is None and judge_agrees(0.7, float("nan")) is None


def test_round_1_agreement_is_measured_on_its_kept_triplets(tmp_path):
    """Round 1's agreement comes from its data (pos_score, neg_score), not from the rule that selected them: with
    margin 0 and relative_margin 1 (both allowed) a kept negative may tie its positive."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from syncse_ray.pipeline.rounds import synth_agreement

    selected = JudgeConfig(margin=0.0, relative_margin=1.0)
    positive = Candidate(POSITIVE, 0, "a person is cycling", sim=0.6)
    tie = select_round("a man rides a bike", [positive], [Candidate(HARD_NEGATIVE, 0, "tie", sim=0.6)], selected)
    assert tie.selection.reason is None  # the rule keeps it ...
    assert judge_agrees(tie.selection.positive.sim, tie.selection.negative.sim) is False  # ... its judge disagrees

    scores = {"pos_score": [0.8, 0.6, 0.9, None, 0.7], "neg_score": [0.5, 0.6, 0.3, 0.2, float("nan")]}
    assert round_1_agreement(scores["pos_score"], scores["neg_score"]) == {
        "round_1_judge_agreement": 2 / 3, "round_1_judged": 3}
    (tmp_path / "synth" / "data").mkdir(parents=True)
    pq.write_table(pa.table({"sent0": ["a"] * 5, **scores}), tmp_path / "synth" / "data" / "part-00000.parquet")
    assert synth_agreement(tmp_path / "synth") == {"round_1_judge_agreement": 2 / 3, "round_1_judged": 3}

    # undefined, said so: no kept triplet scored by an embedding judge, or no triplet at all
    unscored = round_1_agreement([None, None], [0.1, None])
    assert unscored["round_1_judge_agreement"] is None and unscored["round_1_judged"] == 0
    assert "no embedding scores" in unscored["round_1_judge_agreement_note"]
    empty = synth_agreement(tmp_path / "missing")
    assert empty["round_1_judge_agreement"] is None and "no kept triplets" in empty["round_1_judge_agreement_note"]


def test_round_configs_write_into_round_folders(tmp_path):
    from syncse_ray.pipeline.rounds import round_config

    cfg = load_config(None, [f"run_dir={tmp_path}", "pipeline.rounds=3", "eval.compare_base=true"])
    first, third = round_config(cfg, 1), round_config(cfg, 3, "/models/round-2")
    assert first.stage_dir("synth") == third.stage_dir("synth") == tmp_path / "round_1" / "synth"
    assert first.stage_dir("train") == tmp_path / "round_1" / "train" and first.train.data is None
    assert third.stage_dir("eval") == tmp_path / "round_3" / "eval"
    assert third.train.data == tmp_path / "round_3" / "select" / "data"
    assert third.train.model == "/models/round-2" and first.train.model == cfg.train.model
    assert first.eval.compare_base and not third.eval.compare_base  # the base encoder is scored once


@pytest.mark.parametrize("overrides, message", [
    (["train.output_dir=/x"], "train.output_dir cannot be set"),
    (["pipeline.stages=[train, eval]", "train.data=/x"], "needs synth and train"),
    (["synth.judge.method=llm"], "needs an embedding judge"),
])
def test_rounds_refuse_settings_that_cannot_work(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, ["pipeline.rounds=2", *overrides])
