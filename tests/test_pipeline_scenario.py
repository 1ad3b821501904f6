"""One user story, end to end, through both ways users run the pipeline: `syncse pipeline` on a laptop and `ray job
submit` on a cluster (a real Ray head from `ray start`, the job server, `--working-dir .`).

1. Ctrl-C (SIGINT) while synthesis runs: one line saying how to resume, exit 130, no process left, the finished
   chunks kept.
2. The same command, SIGTERM (what `kill` and `ray job stop` send) while training runs, after Ray Train registered
   the step-2 checkpoint: synthesis finished its other chunks, exit 143, no process left.
3. The same config through `ray job submit`: synthesis skipped, training resumed from its checkpoint, evaluation
   run; the job succeeds and every artifact is there (triplets, model, results, cards, report).
4. The CLI once more: every stage skipped, in a few lines, nothing rewritten.
5. A bad value through `ray job submit`: the job fails with one `error:` line naming the setting, and nothing
   already written changes.

What a whole run prints on the console (one display a stage, a summary, under 60 lines) is checked on README
command 1's own output (tests/test_quickstart_run.py), so this story runs the quickstart only at its smallest, with
MiniLM as the encoder it trains."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
from _checkpoints import registered_checkpoint_step
from _procs import stop_process_group

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# MiniLM as the encoder trained: the story is about stopping and resuming, and a 22M model loads, steps, exports
# and scores in a fraction of SmolLM2-135M's time (README command 1's run trains SmolLM2 in this CI).
SMALLEST = ["synth.limit=48", "synth.chunk_size=16", "train.model=bundled:all-minilm-l6-v2", "train.batch_size=4",
            "train.max_steps=4", "train.eval_steps=2", "train.dev_max_pairs=100", "eval.tasks=[sts:STSBenchmark]"]


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory, free_port):
    """A real single-node Ray cluster started the way a user starts one, with its job server."""
    # Token authentication as Ray 2.60 sets it up for a new cluster, with a token of the test's own (so a token
    # left in ~/.ray by another cluster on this machine neither leaks in nor locks the client out).
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DS_ACCELERATOR": "cpu",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env.pop("RAY_ADDRESS", None)
    port, dashboard = free_port(), free_port()
    # A short temp dir: Ray's socket paths under it must stay within AF_UNIX's 107 bytes (pytest-xdist's basetemp,
    # /tmp/pytest-of-<user>/pytest-<n>/popen-gw<i>/, left the dashboard's module sockets over it)
    temp_dir = Path(tempfile.mkdtemp(prefix="syncse-sc-", dir="/tmp"))
    start = [str(BIN / "ray"), "start", "--head", "--block", f"--port={port}", "--num-cpus=8",
             "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
             f"--temp-dir={temp_dir}", "--disable-usage-stats",
             # Every port of its own: Ray's fixed defaults (agent 52365, client server 10001, ...) are taken when
             # another Ray cluster runs on the machine, and a head whose job agent cannot bind takes no jobs.
             *(f"--{name}={free_port()}" for name in (
                 "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
                 "metrics-export-port", "ray-client-server-port", "node-manager-port", "object-manager-port"))]
    # --block in a session of its own: teardown ends exactly this cluster's processes (`ray stop` would end every
    # Ray process on the machine, the test session's own local cluster included).
    log = (temp_dir / "ray_start.log").open("w")
    head = subprocess.Popen(start, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.time() + 300
        while True:
            assert head.poll() is None, (temp_dir / "ray_start.log").read_text()
            ready = subprocess.run([str(BIN / "ray"), "job", "list", "--address", address], env=env,
                                   capture_output=True, text=True, timeout=120, check=False)
            if ready.returncode == 0:
                break
            assert time.time() < deadline, ready.stdout + ready.stderr
            time.sleep(2)
        yield address, env
    finally:
        # then SIGKILL: nothing of it is kept (`ray start --block` took the whole 10 s it was once given)
        stop_process_group(head, timeout_s=3)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _settings(run_dir: Path, data_dir: Path, extra: list[str] = ()) -> list[str]:
    return [f"run_dir={run_dir}", f"data_dir={data_dir}", *SMALLEST, *extra]


def _cli(run_dir: Path, data_dir: Path) -> tuple[list[str], dict[str, str]]:
    cmd = [str(BIN / "syncse"), "pipeline", "configs/quickstart.yaml"]
    for item in _settings(run_dir, data_dir):
        cmd += ["--set", item]
    env = {k: v for k, v in os.environ.items() if k not in ("SYNCSE_VERBOSE", "RAY_ADDRESS")}
    return cmd, {**env, "SYNCSE_PROGRESS_INTERVAL": "30"}


def _run_cli(run_dir: Path, data_dir: Path) -> tuple[int, list[str]]:
    cmd, env = _cli(run_dir, data_dir)
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1500, check=False)
    return proc.returncode, (proc.stdout + proc.stderr).splitlines()


def _stop_cli_when(run_dir: Path, data_dir: Path, ready, sig: signal.Signals, tmp: Path) -> tuple[int, str, list]:
    """Start the CLI pipeline, send `sig` once `ready()`, wait for it to end; (exit code, its output, the
    processes it had started when the signal was sent)."""
    cmd, env = _cli(run_dir, data_dir)
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


def _submit(address: str, env: dict, run_dir: Path, data_dir: Path, extra: list[str] = ()) -> tuple[int, str]:
    runtime_env = {"env_vars": {k: env[k] for k in ("SYNCSE_CACHE_DIR", "HF_HUB_OFFLINE") if k in env}}
    cmd = [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", str(REPO),
           "--runtime-env-json", json.dumps(runtime_env), "--",
           "python", "jobs/pipeline.py", "--config", "configs/quickstart.yaml"]
    for item in _settings(run_dir, data_dir, extra):
        cmd += ["--set", item]
    # `ray job submit` follows the job's logs and exits non-zero when the job fails. The head's job agent starts
    # after its dashboard answers; on a loaded machine a first submission can be refused with "No available
    # agent" (nothing ran): submit again, as Ray's message says.
    for _ in range(30):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1500, cwd=REPO, check=False)
        log = proc.stdout + proc.stderr
        if "No available agent to submit job" not in log:
            break
        time.sleep(5)
    return proc.returncode, log


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
def test_stopped_by_signals_resumed_through_the_job_server_rerun_without_work(ray_head, tmp_path, data_dir):
    address, env = ray_head
    t0 = time.monotonic()
    marks = []  # seconds at the end of each step (printed: `pytest -s` shows where the time goes)

    def mark(step: str) -> None:
        marks.append(f"{step} {time.monotonic() - t0:.0f}s")
        print("scenario: " + ", ".join(marks))

    run_dir = tmp_path / "run"
    done_chunks = run_dir / "synth" / "work" / "annotate" / "done"

    # 1. Ctrl-C while synthesis runs (a chunk finished, the others under way).
    code, text, started = _stop_cli_when(run_dir, data_dir, lambda: any(done_chunks.glob("chunk-*.json")),
                                         signal.SIGINT, tmp_path)
    assert code == 130, text
    assert "stopped by SIGINT" in text and "run the same command again to resume" in text, text
    assert "Traceback" not in text, text
    finished = sorted(done_chunks.glob("chunk-*.json"))
    assert finished and not (run_dir / "synth" / "stage.json").exists()
    _assert_none_left(started)
    mark("1 SIGINT")

    # 2. The same command; SIGTERM while training runs, after its step-2 checkpoint is registered.
    code, text, started = _stop_cli_when(
        run_dir, data_dir,
        lambda: _step(run_dir / "train" / "progress.json") >= 3 and registered_checkpoint_step(run_dir / "train") >= 2,
        signal.SIGTERM, tmp_path)
    assert code == 143, text
    assert "stopped by SIGTERM" in text and "Traceback" not in text, text
    assert "train: interrupted" in text, text
    manifest = json.loads((run_dir / "synth" / "manifest.json").read_text())
    assert manifest["chunks_finished_before_this_run"]["annotate"] >= len(finished)  # the Ctrl-C kept them
    assert (run_dir / "synth" / "stage.json").is_file() and not (run_dir / "train" / "stage.json").exists()
    _assert_none_left(started)
    mark("2 SIGTERM")

    # 3. The same config through the job server: synthesis skipped, training resumed, evaluation run.
    code, log = _submit(address, env, run_dir, data_dir)
    assert code == 0, log[-5000:]
    assert "succeeded" in log, log[-3000:]
    record = json.loads((run_dir / "pipeline.json").read_text())["stages"]
    assert record["synth"]["status"] == "skipped"
    assert record["train"]["status"] == "ran" and record["train"]["resumed_from_step"] >= 2
    assert record["eval"]["status"] == "ran"
    assert record["train"]["precision"] in ("bf16", "fp32")  # what `auto` resolved to on this CPU
    triplets = pq.read_table(run_dir / "synth" / "data").to_pandas()
    assert len(triplets) > 0 and {"sent0", "sent1", "hard_neg"} <= set(triplets.columns)
    assert (run_dir / "train" / "best" / "modules.json").is_file()
    results = json.loads((run_dir / "eval" / "results.json").read_text())
    scores = {r["task"]: r["score"] for r in results["records"]}
    assert 0 < scores["STSBenchmark"] <= 100
    assert (run_dir / "eval" / "base" / "results.json").is_file()  # eval.compare_base: the encoder before training
    assert "configs:" in (run_dir / "synth" / "README.md").read_text(encoding="utf-8")  # the dataset card
    card = (run_dir / "train" / "best" / "README.md").read_text(encoding="utf-8")  # the model card, after eval
    assert "model-index:" in card and "## Trained with syncse-ray" in card
    assert f"{scores['STSBenchmark']:.2f}" in card  # (this run scores STS-B only: its score, no average)
    report = (run_dir / "report.md").read_text()
    for section in ("## Data (synthesis)", "## Training", "## Evaluation", "## Wall time per stage"):
        assert section in report
    assert (run_dir / "report_loss.png").is_file()
    for stage in ("synth", "train", "eval"):
        log_file = run_dir / "logs" / f"{stage}.log"
        assert log_file.is_file() and log_file.stat().st_size > 0, stage

    mark("3 job")

    # 4. The CLI once more: every stage skipped, in a few lines, nothing rewritten.
    model_mtime = (run_dir / "train" / "best" / "modules.json").stat().st_mtime
    code, again = _run_cli(run_dir, data_dir)
    assert code == 0 and len(again) < 20, "\n".join(again)
    assert all(any(line.startswith(f"{stage}: skipped") for line in again) for stage in ("synth", "train", "eval"))
    assert (run_dir / "train" / "best" / "modules.json").stat().st_mtime == model_mtime

    mark("4 rerun")

    # 5. A bad value through the job server: one error line naming the setting; the run folder as it was.
    code, log = _submit(address, env, run_dir, data_dir, ["train.lr=-1"])
    assert code != 0, log[-3000:]
    # (`ray job submit` prints the job's output as it comes, then its last lines again in the status message)
    errors = {line for line in log.splitlines() if line.startswith("error:")}
    assert len(errors) == 1 and "train.lr: Input should be greater than 0" in errors.pop(), log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert (run_dir / "train" / "best" / "modules.json").stat().st_mtime == model_mtime
    mark("5 bad value")
