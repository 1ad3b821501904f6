"""A vLLM engine-core process SIGKILLed mid-chunk while another engine actor runs: real local Ray, two real
vLLM engines (bundled SmolLM2) in Ray Data actors. The actor whose engine died ends itself, Ray restarts it with a
new engine and retries its chunk; the run finishes with every input id exactly once, and no engine process of the
run outlives it."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

import psutil
import pyarrow.dataset as pads
import pytest

from syncse_ray.config import load_config
from syncse_ray.synth import run_synth

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # two vLLM engines in a local Ray cluster

ROWS, CHUNK = 16, 2


def _engine_processes() -> dict[int, tuple[int, str]]:
    """{pid: (its Generator actor's pid, title)} of the vLLM processes (VLLM::EngineCore, VLLM::Worker) among
    this test process's descendants (its Ray cluster)."""
    found = {}
    for proc in psutil.Process().children(recursive=True):
        try:
            title = next((part for part in proc.cmdline() if part.startswith("VLLM::")), None)
            if title is None or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            for parent in proc.parents():
                if "Generator" in " ".join(parent.cmdline()):
                    found[proc.pid] = (parent.pid, title)
                    break
        except psutil.Error:
            continue
    return found


def _kill_an_engine_mid_run(done_dir: Path, seen: dict, killed: dict, stop: threading.Event) -> None:
    """Sample the engine processes; once a chunk has finished and both engines run, SIGKILL one engine core."""
    while not stop.is_set():
        procs = _engine_processes()
        seen.update(procs)
        cores = {pid: actor for pid, (actor, title) in procs.items() if title == "VLLM::EngineCore"}
        if "pid" not in killed and len(set(cores.values())) == 2 and any(done_dir.glob("chunk-*.json")):
            time.sleep(random.uniform(0.0, 2.0))  # a random point inside the chunks now running
            killed["pid"] = random.choice(sorted(cores))
            killed["chunks_done"] = len(list(done_dir.glob("chunk-*.json")))
            psutil.Process(killed["pid"]).kill()
        time.sleep(0.3)


@pytest.mark.timeout(600)
def test_engine_core_killed_mid_chunk_run_finishes_exactly_once(tmp_path, data_dir, cache_dir, ray_local):
    cfg = load_config(REPO / "configs" / "synth_partial_cpu.yaml", [
        f"run_dir={tmp_path / 'run'}", f"data_dir={data_dir}", f"cache_dir={cache_dir}", f"synth.limit={ROWS}",
        f"synth.chunk_size={CHUNK}", "synth.engine.num_engines=2"])
    done_dir = tmp_path / "run" / "synth" / "work" / "annotate" / "done"
    seen: dict[int, tuple[int, str]] = {}
    killed: dict = {}
    stop = threading.Event()
    watcher = threading.Thread(target=_kill_an_engine_mid_run, args=(done_dir, seen, killed, stop), daemon=True)
    watcher.start()
    try:
        result = run_synth(cfg)
    finally:
        stop.set()
        watcher.join(timeout=10)
    print(f"killed engine core {killed}; engine processes seen: {seen}")
    assert "pid" in killed and killed["chunks_done"] < ROWS // CHUNK, "the kill did not land mid-run"
    assert len({actor for actor, _ in seen.values()}) >= 3, "no new engine actor replaced the dead one"

    out = result.output_dir
    kept = pads.dataset(out / "data", format="parquet").to_table().to_pylist()
    dropped = pads.dataset(out / "dropped", format="parquet").to_table().to_pylist()
    ids = [r["id"] for r in kept] + [r["id"] for r in dropped]
    assert len(ids) == len(set(ids)) == ROWS and set(ids) == {f"p{i:09d}" for i in range(ROWS)}
    assert result.kept > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["phases"]["annotate"]["chunks"] == ROWS // CHUNK

    # No engine process of the run outlives it (the reaper ends what an ended actor leaves behind).
    deadline = time.monotonic() + 60
    while alive := [pid for pid in seen if psutil.pid_exists(pid)
                    and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]:
        assert time.monotonic() < deadline, f"engine processes left running: {alive}"
        time.sleep(1)
