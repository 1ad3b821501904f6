"""`syncse pipeline` with pipeline.rounds > 1, for real (round 1's vLLM synthesis reused from the quickstart run;
Ray Data encoding and mining, Ray Train, evaluation), killed with SIGKILL inside round 2 (round 1 done, round 2's
selection done, its training under way), then resumed; rerun with a dev-score bar no round can pass, it stops early
without redoing anything."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from syncse_ray.hardware import usable_cores

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def _command(run_dir: Path, cache_dir: Path, *extra: str) -> list[str]:
    """The quickstart's synthesis (round 1's, copied from README command 1's run), MiniLM as the trained encoder,
    3 steps a round."""
    settings = [f"run_dir={run_dir}", f"cache_dir={cache_dir}",
                "train.model=bundled:all-minilm-l6-v2", "train.precision=fp32", "train.num_workers=1",
                "train.batch_size=8", "train.max_steps=3", "train.eval_steps=3", "train.dev_max_pairs=100",
                "train.deepspeed.zero_stage=0", "eval.tasks=[sts:STSBenchmark]", "eval.compare_base=false",
                "pipeline.rounds=2", "pipeline.next_round.min_delta=null", *extra]
    return [str(Path(sys.executable).with_name("syncse")), "pipeline", str(REPO / "configs" / "quickstart.yaml"),
            *(arg for s in settings for arg in ("--set", s))]


def _run_until(cmd: list[str], env: dict[str, str], done, kill_tree, timeout: float = 600) -> None:
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + timeout
        while not done():
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline, "the kill point was never reached"
            time.sleep(0.2)
    finally:
        kill_tree(proc)


def test_rounds_resume_after_kills_and_stop_early(tmp_path, cache_dir, data_dir, kill_tree, quickstart_run):
    run_dir = tmp_path / "run"
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "SYNCSE_DATA_DIR": str(data_dir)}
    cmd = _command(run_dir, cache_dir)
    r1, r2 = run_dir / "round_1", run_dir / "round_2"
    # Round 1's synthesis is the quickstart's (the same synth settings, so its stage marker matches): the rounds
    # are what this test is about, and vLLM synthesis is already covered by that run.
    shutil.copytree(quickstart_run[0] / "synth", r1 / "synth")

    # killed inside round 2: round 1 trained and evaluated, round 2's selection done, its training under way
    _run_until(cmd, env, lambda: (r2 / "select" / "stage.json").is_file() and (r2 / "train").is_dir(), kill_tree)
    assert (r1 / "eval" / "stage.json").is_file() and not (r2 / "train" / "stage.json").exists()

    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((run_dir / "pipeline.json").read_text())
    stages = {k: v["status"] for k, v in record["stages"].items()}
    assert {k: stages[k] for k in ("round_1/synth", "round_1/train", "round_1/eval", "round_2/select")} == \
        dict.fromkeys(("round_1/synth", "round_1/train", "round_1/eval", "round_2/select"), "skipped")
    assert stages["round_2/train"] == stages["round_2/eval"] == "ran"
    # its one training worker computes on every core (Ray alone starts it with one thread: the CPU it reserves)
    assert f"1 worker(s), {usable_cores()} torch threads each" in (run_dir / "logs" / "round_2_train.log").read_text()
    rounds = record["rounds"]
    assert [r["round"] for r in rounds] == [1, 2] and all(r["status"] == "kept" for r in rounds)
    assert all(r["steps"] == 3 and r["sts_avg"] is not None for r in rounds)

    # round 2 chose from round 1's candidates (and mined from its pool), never an anchor's copy
    round_1_ids = set(pq.read_table(r1 / "synth" / "candidates", columns=["id"]).column("id").to_pylist())
    kept = pq.read_table(r2 / "select" / "data").to_pylist()
    stats = json.loads((r2 / "select" / "stats.json").read_text())
    assert kept and stats["kept"] == len(kept) and stats["anchors"] == len(round_1_ids)
    # round 1's judge agreement is measured, in each round: recomputed here from round 1's scores (its kept
    # triplets' pos_score/neg_score; for round 2's picks with an LLM negative, round 1's candidate scores)
    from syncse_ray.synth.prompts import HARD_NEGATIVE, POSITIVE
    first = [(r["pos_score"], r["neg_score"]) for r in pq.read_table(r1 / "synth" / "data").to_pylist()
             if r["pos_score"] is not None and r["neg_score"] is not None]
    sim = {(c["id"], c["kind"], c["text"]): c["sim"] for c in pq.read_table(r1 / "synth" / "candidates").to_pylist()}
    second = [(sim.get((r["id"], POSITIVE, r["sent1"])), sim.get((r["id"], HARD_NEGATIVE, r["hard_neg"])))
              for r in kept if r["negative_source"] == "llm"]
    second = [(p, n) for p, n in second if p is not None and n is not None]
    assert first and second and {r["round"]: r.get("round_1_judged") for r in rounds} == {1: len(first), 2: len(second)}
    for row, pairs in ((rounds[0], first), (rounds[1], second)):
        assert row["round_1_judge_agreement"] == pytest.approx(sum(p > n for p, n in pairs) / len(pairs))
        assert 0.0 <= row["round_1_judge_agreement"] <= 1.0
    assert stats["round_1_judge_agreement"] == rounds[1]["round_1_judge_agreement"]
    assert {r["id"] for r in kept} <= round_1_ids
    assert all(r["hard_neg"] != r["sent0"] and r["hard_neg"] != r["sent1"] for r in kept)
    assert all(r["neg_score"] < r["pos_score"] for r in kept)
    report = (run_dir / "report.md").read_text()
    assert "## Rounds" in report and (run_dir / "report_rounds.png").is_file()

    # now asking for 3 rounds, each to beat the best earlier dev score by 1000 points: round 2 is not redone but
    # no longer counts, so the run stops there (no round 3) and round 1's model is the run's
    again = subprocess.run(_command(run_dir, cache_dir, "pipeline.rounds=3", "pipeline.next_round.min_delta=1000"),
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    record = json.loads((run_dir / "pipeline.json").read_text())
    assert [(r["round"], r["status"]) for r in record["rounds"]] == [(1, "kept"), (2, "stopped")]
    assert record["stages"]["round_2/train"]["status"] == "skipped" and record["best_round"] == 1
    assert not (run_dir / "round_3").exists()
