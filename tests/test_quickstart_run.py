"""README command 1, as a person sees it: `syncse pipeline configs/quickstart.yaml` prints one progress display a
stage and a summary table, under 60 lines, with what Ray, vLLM, DeepSpeed and the models print kept in
<run_dir>/logs/<stage>.log; the run trains SmolLM2 into a better sentence encoder on STS-B.

CI runs command 1 before the tests and keeps its output (`.ci/run`); the `quickstart_run` fixture reads that run,
or runs the quickstart once when there is none."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow  # the fixture runs the whole quickstart when README command 1 has not


def test_the_console_is_one_display_a_stage_and_a_summary(quickstart_run):
    run_dir, lines = quickstart_run
    text = "\n".join(lines)
    assert len(lines) < 60, text
    for noise in ("Traceback", "INFO", "WARNING"):
        assert noise not in text, text
    for stage in ("synth", "train", "eval"):
        assert sum(line.startswith(f"{stage}: done in") for line in lines) == 1, text
        log = run_dir / "logs" / f"{stage}.log"
        assert log.is_file() and log.stat().st_size > 0, stage
    assert "vLLM" in (run_dir / "logs" / "synth.log").read_text()  # the engine's output went to the log
    assert "syncse pipeline" in text and "STSBenchmark" in text
    assert any(line.startswith("report ") and line.endswith("report.md") for line in lines), text


def test_training_makes_smollm2_a_better_sentence_encoder(quickstart_run):
    run_dir, _ = quickstart_run
    record = json.loads((run_dir / "pipeline.json").read_text())["stages"]
    assert record["train"]["precision"] in ("bf16", "fp32") and record["synth"]["engine_dtype"] in (
        "bfloat16", "float32")

    def scores(path):
        return {r["task"]: r["score"] for r in json.loads(path.read_text())["records"]}

    before, after = scores(run_dir / "eval" / "base" / "results.json"), scores(run_dir / "eval" / "results.json")
    # The README's runs gain 11-18 points; 2 leaves room for an unlucky synthesis, not for no learning.
    assert set(after) == set(before) == {"STSBenchmark"}
    assert after["STSBenchmark"] >= before["STSBenchmark"] + 2, (before, after)
