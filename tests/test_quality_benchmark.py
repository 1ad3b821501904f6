"""benchmarks/quality.py's arithmetic, without a run: the per-seed table (mean ± sample sd), the gap recovery per
seed for both synthetic arms, the transfer and reranking columns only where an arm has them."""

from __future__ import annotations

import importlib.util
import statistics
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quality():
    spec = importlib.util.spec_from_file_location("quality_benchmark", REPO / "benchmarks" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _results(sts: dict[str, float], transfer: dict[str, float] | None = None) -> dict:
    records = [{"protocol": "senteval-sts", "task": t, "score": v} for t, v in sts.items()]
    records += [{"protocol": "senteval-transfer", "task": t, "score": v} for t, v in (transfer or {}).items()]
    records.append({"protocol": "senteval-dev", "task": "STSBenchmark", "score": 99.0})  # not a test column
    return {"records": records}


def test_score_columns_keep_test_sets_and_name_the_transfer_average(quality):
    got = quality.score_columns(_results({"STSBenchmark": 50.0, "avg": 48.0}, {"MR": 70.0, "avg": 75.0}))
    assert got == {"STSBenchmark": 50.0, "avg": 48.0, "MR": 70.0, quality.TRANSFER_AVG: 75.0}


def test_rerank_maps_are_columns_with_their_average(quality):
    results = _results({"STSBenchmark": 50.0})
    results["records"] += [
        {"protocol": "mteb-local", "task": "AskUbuntuDupQuestions", "score": 50.0},
        {"protocol": "mteb-hub", "task": "SciDocsRR", "score": 70.0},
        {"protocol": "mteb-local", "task": "STS12", "score": 10.0},  # an mteb STS task: not a reranking column
    ]
    got = quality.score_columns(results)
    assert got == {"STSBenchmark": 50.0, "AskUbuntuDupQuestions": 50.0, "SciDocsRR": 70.0, quality.RERANK_AVG: 60.0}
    header = quality.render(quality.summarize({"synth": {0: got}})).splitlines()[0]
    assert header.endswith("| Avg. | AskUbuntuDupQuestions | SciDocsRR | rerank avg |")


def test_seeds_give_mean_and_sample_sd_and_a_recovery_per_seed(quality):
    per_seed = {
        "base": {None: {"avg": 40.0}},
        "unsup": {0: {"avg": 50.0}, 1: {"avg": 52.0}, 2: {"avg": 48.0}},
        "gold": {0: {"avg": 60.0}, 1: {"avg": 62.0}, 2: {"avg": 58.0}},
        "synth": {0: {"avg": 59.0}, 1: {"avg": 60.0}, 2: {"avg": 57.0}},
        "scratch": {0: {"avg": 57.0}, 1: {"avg": 59.0}},  # a seed missing: recovered on the seeds it has
    }
    summary = quality.summarize(per_seed)
    assert summary["unsup"]["avg"] == {"mean": 50.0, "sd": 2.0, "n": 3}
    assert summary["base"]["avg"] == {"mean": 40.0, "sd": 0.0, "n": 1}
    assert summary["scratch"]["avg"]["n"] == 2
    assert quality.recoveries(per_seed, "synth") == pytest.approx({0: 0.9, 1: 0.8, 2: 0.9})
    assert quality.recoveries(per_seed, "scratch") == pytest.approx({0: 0.7, 1: 0.7})
    lines = quality.render_recoveries(per_seed).splitlines()
    mean, sd = statistics.fmean([90.0, 80.0, 90.0]), statistics.stdev([90.0, 80.0, 90.0])
    assert lines[0] == (f"gap recovery (3-2)/(4-2) on avg: {mean:.1f} ± {sd:.1f}% "
                        "(seed 0: 90.0%, seed 1: 80.0%, seed 2: 90.0%)")
    assert lines[1].startswith("gap recovery (5-2)/(4-2) on avg: 70.0 ± 0.0%")

    table = quality.render(summary).splitlines()
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table[2:]}
    assert "| 3 | " in rows["3 SynCSE-partial (project synthesis)"]  # three seeds
    assert "58.00 ± 1.41" in rows["5 SynCSE-scratch (project synthesis, sentences written too)"]
    assert "| 40.00 |" in rows["1 base encoder, untrained"]  # one value: no spread shown
    assert "MR" not in table[0]  # no arm has transfer scores: no transfer columns


def test_recovery_falls_back_to_stsb_and_transfer_columns_appear_when_present(quality):
    per_seed = {"unsup": {0: {"STSBenchmark": 40.0, "MR": 70.0}}, "gold": {0: {"STSBenchmark": 60.0}},
                "synth": {0: {"STSBenchmark": 55.0, "MR": 71.0, quality.TRANSFER_AVG: 72.0}}}
    assert quality.recovery_key(per_seed) == "STSBenchmark"  # not every run has the seven-task average
    assert quality.recoveries(per_seed, "synth") == {0: 0.75}
    header = quality.render(quality.summarize(per_seed)).splitlines()[0]
    assert header.endswith("| Avg. | MR | transfer avg |")


def test_help_names_the_scratch_arm_seeds_transfer_and_rerank_columns():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "quality.py"), "--help"], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    assert "scratch" in out and "--seeds" in out and "--scratch-requests" in out and "transfer" in out
    assert "rerank" in out


@pytest.mark.slow
@pytest.mark.benchmark  # minutes: `pytest --benchmarks tests/test_quality_benchmark.py`, not in .ci/run
@pytest.mark.timeout(3600)
def test_smallest_configuration_end_to_end_table_matches_the_results_files(quality, tmp_path, data_dir):
    """All five arms × 2 seeds on a handful of premises through the real stages (vLLM synthesis, partial and
    scratch; Ray Train; the eval stage), MiniLM as the encoder so it runs in minutes; then the report's numbers are
    recomputed from each run's own `eval/results.json`."""
    import json
    import subprocess
    import sys

    from syncse_ray.eval.results import load_results

    out = tmp_path / "quality"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "quality.py"), "--n", "16", "--seeds", "0,1", "--steps", "2",
         "--batch-size", "4", "--encoder", "bundled:all-minilm-l6-v2", "--pooler", "avg", "--precision", "fp32",
         "--tasks", "sts:STSBenchmark", "--arms", "base,unsup,synth,gold,scratch", "--scratch-requests", "4",
         "--data-dir", str(data_dir), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=3300, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    report = json.loads((out / "quality.json").read_text())

    # every number in the report is the one its run's results file holds
    per_seed = {"base": {None: quality.score_columns(load_results(
        next((out / "eval_base").glob("*/results.json"))))}}
    for arm in ("unsup", "synth", "gold", "scratch"):
        assert sorted(report["runs"][arm]) == ["0", "1"], arm
        per_seed[arm] = {int(seed): quality.score_columns(load_results(Path(run["folder"]) / "eval" / "results.json"))
                         for seed, run in report["runs"][arm].items()}
    assert report["scores"] == {arm: {str(s): v for s, v in by_seed.items()} for arm, by_seed in per_seed.items()}
    # the table's arithmetic, by hand: mean and sample sd over the two seeds, the recovery per seed
    for arm in ("unsup", "synth", "gold", "scratch"):
        values = [per_seed[arm][s]["STSBenchmark"] for s in (0, 1)]
        stat = report["summary"][arm]["STSBenchmark"]
        assert stat["n"] == 2
        assert stat["mean"] == pytest.approx(statistics.fmean(values))
        assert stat["sd"] == pytest.approx(statistics.stdev(values))
    for arm in ("synth", "scratch"):
        for s in (0, 1):
            unsup, gold = per_seed["unsup"][s]["STSBenchmark"], per_seed["gold"][s]["STSBenchmark"]
            want = (per_seed[arm][s]["STSBenchmark"] - unsup) / (gold - unsup)
            assert report["gap_recovery"][arm][str(s)] == pytest.approx(want)
    table = (out / "quality.md").read_text()
    for arm in ("unsup", "synth", "gold", "scratch"):
        stat = report["summary"][arm]["STSBenchmark"]
        assert f"| {quality.ARM_LABELS[arm]} | 2 |" in table and f"{stat['mean']:.2f} ± {stat['sd']:.2f}" in table
    assert {"synth", "scratch"} <= set(report["synth"]) and all(report["synth"][a]["kept"] > 0
                                                               for a in ("synth", "scratch"))
