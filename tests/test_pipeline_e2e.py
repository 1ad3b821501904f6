"""The quickstart as users run it on a cluster: a real Ray head (`ray start`), `ray job submit --working-dir .`,
then the artifacts. The first submission dies in training after a checkpoint (an injected fault); resubmitting
the same command skips synthesis and continues training from the checkpoint; running it once more does no work."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from _procs import stop_process_group

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# Small enough for CI on 2 cores (96 SNLI lines: 32 distinct premises); the rest is configs/quickstart.yaml as shipped.
OVERRIDES = ["synth.limit=96", "synth.chunk_size=48", "train.batch_size=4", "train.max_steps=6",
             "train.eval_steps=2", "train.dev_max_pairs=200", "eval.tasks=[sts:STSBenchmark]"]


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory, free_port):
    """A real single-node Ray cluster started the way a user starts one, with its job server."""
    # Token authentication as Ray 2.60 sets it up for a new cluster, with a token of the test's own (so a token
    # left in ~/.ray by another cluster on this machine neither leaks in nor locks the client out).
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DS_ACCELERATOR": "cpu",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    port, dashboard = free_port(), free_port()
    temp_dir = tmp_path_factory.mktemp("ray")
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
                                   capture_output=True, text=True, timeout=120)
            if ready.returncode == 0:
                break
            assert time.time() < deadline, ready.stdout + ready.stderr
            time.sleep(2)
        yield address, env
    finally:
        stop_process_group(head, timeout_s=60)
        log.close()


def _submit(address: str, env: dict, run_dir: Path, extra: list[str]) -> tuple[int, str]:
    overrides = [f"run_dir={run_dir}", f"data_dir={os.environ.get('SYNCSE_DATA_DIR', REPO.parent / 'shared/data')}",
                 *OVERRIDES, *extra]
    runtime_env = {"env_vars": {k: env[k] for k in ("SYNCSE_CACHE_DIR", "HF_HUB_OFFLINE") if k in env}}
    cmd = [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", str(REPO),
           "--runtime-env-json", json.dumps(runtime_env), "--",
           "python", "jobs/pipeline.py", "--config", "configs/quickstart.yaml"]
    for item in overrides:
        cmd += ["--set", item]
    # `ray job submit` follows the job's logs and exits non-zero when the job fails. The head's job agent starts
    # after its dashboard answers; on a loaded machine a first submission can be refused with "No available
    # agent" (nothing ran): submit again, as Ray's message says.
    for _ in range(30):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1500, cwd=REPO)
        log = proc.stdout + proc.stderr
        if "No available agent to submit job" not in log:
            break
        time.sleep(5)
    return proc.returncode, log


@pytest.mark.slow
@pytest.mark.timeout(1800)  # two pipeline runs of the quickstart through the job server: ~13 min on 2 quiet cores
def test_quickstart_job_fails_resumes_and_reruns_without_work(ray_head, tmp_path, data_dir):
    address, env = ray_head
    run_dir = tmp_path / "quickstart"

    # 1. Dies in training after the checkpoint of step 2 (no retries, so the job fails).
    code, log = _submit(address, env, run_dir, ["train.fault_at_step=3", "train.max_failures=0"])
    assert code != 0, log[-3000:]
    assert "failed" in log, log[-3000:]
    assert (run_dir / "synth" / "stage.json").is_file(), "synthesis did not finish: " + log[-5000:]
    assert not (run_dir / "train" / "stage.json").exists()

    # 2. The same command again: synthesis is skipped, training continues from its checkpoint, the job succeeds.
    code, log = _submit(address, env, run_dir, [])
    assert code == 0, log[-5000:]
    assert "succeeded" in log, log[-3000:]
    record = json.loads((run_dir / "pipeline.json").read_text())["stages"]
    assert record["synth"]["status"] == "skipped"
    assert record["train"]["status"] == "ran" and record["train"]["resumed_from_step"] >= 2
    assert record["eval"]["status"] == "ran"

    # Artifacts: triplets, model, results, report.
    triplets = pq.read_table(run_dir / "synth" / "data").to_pandas()
    assert len(triplets) > 0 and {"sent0", "sent1", "hard_neg"} <= set(triplets.columns)
    assert (run_dir / "train" / "best" / "modules.json").is_file()
    results = json.loads((run_dir / "eval" / "results.json").read_text())
    scores = {r["task"]: r["score"] for r in results["records"]}
    assert 0 < scores["STSBenchmark"] <= 100
    assert (run_dir / "eval" / "base" / "results.json").is_file()  # eval.compare_base: the encoder before training
    assert "configs:" in (run_dir / "synth" / "README.md").read_text(encoding="utf-8")  # the dataset card
    card = (run_dir / "train" / "best" / "README.md").read_text(encoding="utf-8")  # the model card, after eval
    # (this run scores STS-B only: its score, no average)
    assert "model-index:" in card and "## Trained with syncse-ray" in card
    assert f"{scores['STSBenchmark']:.2f}" in card
    report = (run_dir / "report.md").read_text()
    for section in ("## Data (synthesis)", "## Training", "## Evaluation", "## Wall time per stage"):
        assert section in report
    assert (run_dir / "report_loss.png").is_file()

    # 3. Once more, in-process: every stage is skipped and nothing is rewritten.
    from syncse_ray.config import load_config
    from syncse_ray.pipeline import run_pipeline

    cfg = load_config(REPO / "configs" / "quickstart.yaml", [f"run_dir={run_dir}", f"data_dir={data_dir}", *OVERRIDES])
    model_mtime = (run_dir / "train" / "best" / "modules.json").stat().st_mtime
    result = run_pipeline(cfg)
    assert {name: s["status"] for name, s in result.stages.items()} == {
        "synth": "skipped", "train": "skipped", "eval": "skipped"}
    assert (run_dir / "train" / "best" / "modules.json").stat().st_mtime == model_mtime
