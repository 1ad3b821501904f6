"""What a person sees: `syncse pipeline configs/quickstart.yaml` at its smallest, as a user runs it (a real
vLLM engine, Ray Train + DeepSpeed, evaluation), prints under 60 lines without --verbose, one progress display a
stage and a summary table; what Ray, vLLM, DeepSpeed and the models print is in <run_dir>/logs/<stage>.log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SMALLEST = ["synth.limit=48", "synth.chunk_size=48", "train.batch_size=4", "train.max_steps=2",
            "train.eval_steps=2", "train.dev_max_pairs=100", "eval.tasks=[sts:STSBenchmark]"]


def _pipeline(run_dir: Path, data_dir: Path) -> tuple[int, list[str]]:
    cmd = [str(Path(sys.executable).with_name("syncse")), "pipeline", "configs/quickstart.yaml",
           "--set", f"run_dir={run_dir}", "--set", f"data_dir={data_dir}"]
    for item in SMALLEST:
        cmd += ["--set", item]
    env = {**os.environ, "SYNCSE_PROGRESS_INTERVAL": "30"}
    env.pop("SYNCSE_VERBOSE", None)
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1500, check=False)
    return proc.returncode, (proc.stdout + proc.stderr).splitlines()


@pytest.mark.timeout(1800)
def test_quickstart_console_is_short_and_the_logs_hold_the_rest(tmp_path, data_dir):
    code, lines = _pipeline(tmp_path / "run", data_dir)
    text = "\n".join(lines)
    assert code == 0, text
    assert len(lines) < 60, text
    assert "Traceback" not in text and "INFO" not in text and "WARNING" not in text, text
    for stage in ("synth", "train", "eval"):
        assert any(line.startswith(f"{stage}: done in") for line in lines), text
        log = tmp_path / "run" / "logs" / f"{stage}.log"
        assert log.is_file() and log.stat().st_size > 0, stage
    assert "vLLM" in (tmp_path / "run" / "logs" / "synth.log").read_text()  # the engine's output went there
    assert "syncse pipeline" in text and "STSBenchmark" in text and f"report {tmp_path / 'run' / 'report.md'}" in text

    # Once more: every stage is skipped, in a few lines.
    code, again = _pipeline(tmp_path / "run", data_dir)
    assert code == 0 and len(again) < 20, "\n".join(again)
    assert all(any(line.startswith(f"{stage}: skipped") for line in again) for stage in ("synth", "train", "eval"))
