"""What a person sees and does: `syncse pipeline configs/quickstart.yaml` at its smallest, as a user runs it (a
real vLLM engine, Ray Train + DeepSpeed, evaluation). Stopped with Ctrl-C (SIGINT) inside synthesis and with
SIGTERM inside training, it ends in one line saying how to resume, leaves no process behind and keeps what was
finished; the same command then resumes (finished chunks and the training checkpoint reused) and prints under 60
lines without --verbose, one progress display a stage and a summary table, while what Ray, vLLM, DeepSpeed and
the models print is in <run_dir>/logs/<stage>.log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from _checkpoints import registered_checkpoint_step

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SMALLEST = ["synth.limit=48", "synth.chunk_size=16", "train.batch_size=4", "train.max_steps=4",
            "train.eval_steps=2", "train.dev_max_pairs=100", "eval.tasks=[sts:STSBenchmark]"]


def _command(run_dir: Path, data_dir: Path) -> tuple[list[str], dict[str, str]]:
    cmd = [str(Path(sys.executable).with_name("syncse")), "pipeline", "configs/quickstart.yaml",
           "--set", f"run_dir={run_dir}", "--set", f"data_dir={data_dir}"]
    for item in SMALLEST:
        cmd += ["--set", item]
    env = {k: v for k, v in os.environ.items() if k not in ("SYNCSE_VERBOSE", "RAY_ADDRESS")}
    return cmd, {**env, "SYNCSE_PROGRESS_INTERVAL": "30"}


def _pipeline(run_dir: Path, data_dir: Path) -> tuple[int, list[str]]:
    cmd, env = _command(run_dir, data_dir)
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1500, check=False)
    return proc.returncode, (proc.stdout + proc.stderr).splitlines()


def _stop_when(run_dir: Path, data_dir: Path, ready, sig: signal.Signals, tmp: Path) -> tuple[int, str, list]:
    """Start the pipeline, send `sig` once `ready()`, wait for it to end; (exit code, its output, the processes
    it had started when the signal was sent)."""
    cmd, env = _command(run_dir, data_dir)
    out = (tmp / f"{sig.name}.out").open("w+")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 900
        while not ready():
            assert proc.poll() is None, "the run ended before the signal: " + Path(out.name).read_text()
            assert time.monotonic() < deadline, "the point to stop at was never reached"
            time.sleep(0.2)
        started = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(sig)
        code = proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
        out.close()
    return code, Path(out.name).read_text(), started


def _assert_none_left(processes: list) -> None:
    deadline = time.monotonic() + 60
    while alive := [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]:
        assert time.monotonic() < deadline, f"left running: {[(p.pid, p.name()) for p in alive]}"
        time.sleep(1)


def _step(progress: Path) -> int:
    try:
        return json.loads(progress.read_text()).get("step", 0)
    except (OSError, ValueError):
        return 0


@pytest.mark.timeout(2400)
def test_quickstart_stops_on_signals_resumes_and_the_console_is_short(tmp_path, data_dir):
    run_dir = tmp_path / "run"
    done_chunks = run_dir / "synth" / "work" / "annotate" / "done"

    # Ctrl-C while synthesis runs (a chunk finished, the others under way).
    code, text, started = _stop_when(run_dir, data_dir, lambda: any(done_chunks.glob("chunk-*.json")),
                                     signal.SIGINT, tmp_path)
    assert code == 130, text
    assert "stopped by SIGINT" in text and "run the same command again to resume" in text, text
    assert "Traceback" not in text, text
    finished = sorted(done_chunks.glob("chunk-*.json"))
    assert finished and not (run_dir / "synth" / "stage.json").exists()
    _assert_none_left(started)

    # SIGTERM (what `kill` and `ray job stop` send) while training runs, after its step-2 checkpoint.
    code, text, started = _stop_when(
        run_dir, data_dir,
        lambda: _step(run_dir / "train" / "progress.json") >= 3 and registered_checkpoint_step(run_dir / "train") >= 2,
        signal.SIGTERM, tmp_path)
    assert code == 143, text
    assert "stopped by SIGTERM" in text and "Traceback" not in text, text
    assert "train: interrupted" in text, text
    manifest = json.loads((run_dir / "synth" / "manifest.json").read_text())
    assert manifest["chunks_finished_before_this_run"]["annotate"] >= len(finished)  # the Ctrl-C kept them
    assert not (run_dir / "train" / "stage.json").exists()
    _assert_none_left(started)

    # The same command: synthesis is done, training resumes from its checkpoint, evaluation runs.
    code, lines = _pipeline(run_dir, data_dir)
    text = "\n".join(lines)
    assert code == 0, text
    assert len(lines) < 60, text
    assert "Traceback" not in text and "INFO" not in text and "WARNING" not in text, text
    assert any(line.startswith("synth: skipped") for line in lines), text
    for stage in ("train", "eval"):
        assert any(line.startswith(f"{stage}: done in") for line in lines), text
    for stage in ("synth", "train", "eval"):
        log = run_dir / "logs" / f"{stage}.log"
        assert log.is_file() and log.stat().st_size > 0, stage
    assert "vLLM" in (run_dir / "logs" / "synth.log").read_text()  # the engine's output went there
    assert "syncse pipeline" in text and "STSBenchmark" in text and f"report {run_dir / 'report.md'}" in text
    record = json.loads((run_dir / "pipeline.json").read_text())["stages"]
    assert record["train"]["resumed_from_step"] >= 2

    # Once more: every stage is skipped, in a few lines.
    code, again = _pipeline(run_dir, data_dir)
    assert code == 0 and len(again) < 20, "\n".join(again)
    assert all(any(line.startswith(f"{stage}: skipped") for line in again) for stage in ("synth", "train", "eval"))
