"""The multi-node scenario of `test_multinode.py`, run in a process of its own (its cluster must not meet the
test session's local one): a Ray head that runs only the driver and two worker nodes, all on this machine
(`ray.cluster_utils.Cluster`), the run folder on storage every node sees. The driver joins through
`ray.address`, as a `ray job submit` job does.

1. Synthesis with two vLLM engine actors, one on each worker node; once a chunk has finished, both engines are hit
   at once: the vLLM engine-core process of one is SIGKILLed (its actor must notice, end itself and be restarted
   with a new engine), and the node holding the other is removed (its raylet and every process on it killed) while
   a replacement node joins (what an autoscaler does). No vLLM process of the run outlives it.
2. Training with 2 workers; once the step-2 checkpoint is stored, the node holding a worker is removed and a
   replacement joins; Ray Train restarts the group from that checkpoint.

Prints one JSON line (`RESULT {...}`) for the test to check.

    python tests/_multinode.py TMP_DIR DATA_DIR CACHE_DIR
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import psutil
from _checkpoints import registered_checkpoint_step

REPO = Path(__file__).resolve().parents[1]
# Per worker node: one engine (the `vllm_node` resource, one a node, which the engines ask for) and room beside it
# for all of Ray Data's light actors (request building, finishing, the judge: 2.5 CPUs at most), wherever they land
# first. With CPUs alone keeping engines apart (3 a node, 2 an engine), light actors placed first could leave no node
# 2 CPUs free: one engine ran the whole synthesis and the faults never landed (seen once in CI).
NODE_CPUS = 5
NODE_RESOURCES = {"vllm_node": 1}


def _add_node(cluster):
    """A worker node: NODE_CPUS and one engine's `vllm_node` (also what an autoscaler adds as a replacement)."""
    return cluster.add_node(num_cpus=NODE_CPUS, resources=NODE_RESOURCES)


def _on_node(node, marker: str) -> list[int]:
    """Pids of the processes on `node` (children of its raylet) whose title holds `marker`."""
    raylet = node.all_processes["raylet"][0].process.pid
    found = []
    for proc in psutil.Process(raylet).children(recursive=True):
        try:
            if marker in " ".join(proc.cmdline()):
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


def _replace_node_when(cluster, nodes: list, ready, marker: str, events: list, timeout: float = 600) -> None:
    """Once `ready()`, remove the worker node running a process titled `marker`, then add a node like it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            victim = next((n for n in nodes if _on_node(n, marker)), None)
            if victim is not None:
                pids = _on_node(victim, marker)
                cluster.remove_node(victim, allow_graceful=False)
                nodes.remove(victim)
                nodes.append(_add_node(cluster))
                events.append({"removed": marker, "pids": pids, "at": time.time()})
                return
        time.sleep(0.3)


def _engine_processes(nodes: list) -> dict[int, str]:
    """{pid: title} of the vLLM processes (titled `VLLM::…`: EngineCore, Worker) on `nodes`."""
    found = {}
    for node in nodes:
        try:
            children = psutil.Process(node.all_processes["raylet"][0].process.pid).children(recursive=True)
        except psutil.Error:
            continue
        for proc in children:
            try:
                title = next((part for part in proc.cmdline() if part.startswith("VLLM::")), None)
            except psutil.Error:
                continue
            if title is not None:
                found[proc.pid] = title
    return found


def _hit_both_engines_when(cluster, nodes: list, ready, events: list, seen: dict, stop: threading.Event) -> None:
    """Record every vLLM process of the run (`seen`); once `ready()` and an engine core runs on each of two worker
    nodes, SIGKILL one engine core and remove the other engine's node (adding a node like it)."""
    while not stop.is_set():
        seen.update(_engine_processes(nodes))
        if not events and ready():
            cores = {n: _on_node(n, "VLLM::EngineCore") for n in nodes}
            with_engine = [n for n in nodes if cores[n]]
            if len(with_engine) == 2:
                hit, removed = with_engine
                pid = cores[hit][0]
                psutil.Process(pid).kill()
                events.append({"killed": "VLLM::EngineCore", "pid": pid, "at": time.time()})
                pids = _on_node(removed, "Generator")
                cluster.remove_node(removed, allow_graceful=False)
                nodes.remove(removed)
                nodes.append(_add_node(cluster))
                events.append({"removed": "Generator", "pids": pids, "at": time.time()})
        time.sleep(0.3)


def _recording_errors(fn, events: list):
    """`fn` for a watcher thread: an exception there ends the thread silently, so it goes into `events` (the
    test then says why no fault landed)."""
    def run(*args):
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001
            events.append({"watcher_error": f"{fn.__name__}: {type(exc).__name__}: {exc}"})
    return run


def _left_running(pids) -> list[int]:
    """Those of `pids` still running after up to 60 s (zombies count as ended)."""
    deadline = time.monotonic() + 60
    while True:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                continue
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(1)


def main(tmp: Path, data_dir: Path, cache_dir: Path) -> None:
    import ray._private.utils
    from ray.cluster_utils import Cluster

    from syncse_ray.config import load_config
    from syncse_ray.synth import run_synth
    from syncse_ray.train import run_train
    from syncse_ray.train.data import snli_triplets

    # Cluster records its address in /tmp/ray/ray_current_cluster, where any `ray.init()` without an address on
    # this machine would find and join it (another test's local cluster, say): the driver here names it instead.
    ray._private.utils.write_ray_address = lambda *args, **kwargs: None
    os.environ["DS_ACCELERATOR"] = "cpu"  # the nodes' workers inherit it
    # The head runs the driver only. No exit hooks: they install a SIGTERM handler, which Python allows only in
    # the main thread, and nodes are added from the thread that watches the run; `finally` below ends them all.
    start = time.monotonic()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0}, shutdown_at_exit=False)
    nodes = [_add_node(cluster) for _ in range(2)]
    events: list[dict] = []
    seconds: dict[str, float] = {"cluster": round(time.monotonic() - start)}  # where the time goes, for the log
    result: dict = {"events": events, "seconds": seconds}
    try:
        common = [f"data_dir={data_dir}", f"cache_dir={cache_dir}", f"ray.address={cluster.address}"]

        # 1. Synthesis across the nodes; mid-run one engine core is SIGKILLed and the other engine's node removed.
        synth_cfg = load_config(REPO / "configs" / "synth_partial_cpu.yaml", [
            # 4 candidates a (sentence, kind), the default: with 2 one engine once wrote all 8 chunks before the
            # second engine's core had started, and no fault landed (CI at 2a83430)
            *common, f"run_dir={tmp / 'synth-run'}", "synth.limit=16", "synth.chunk_size=2",
            "synth.engine.num_engines=2", "synth.engine.num_cpus_per_engine=2",
            "synth.engine.cpu_threads_bind=null", "synth.judge.num_cpus_per_actor=0.5",
            "synth.engine.resources={vllm_node: 1}",
            # vLLM's own engine-core process (the GPU default; the CPU default keeps the core in the actor): the
            # process this scenario SIGKILLs
            "synth.engine.in_process=false"])
        done = tmp / "synth-run" / "synth" / "work" / "annotate" / "done"
        chunks_done: dict = {}

        def first_chunk_done() -> bool:
            chunks_done["at_hit"] = len(list(done.glob("chunk-*.json")))
            return chunks_done["at_hit"] > 0

        seen: dict[int, str] = {}
        stop = threading.Event()
        watcher = threading.Thread(target=_recording_errors(_hit_both_engines_when, events), daemon=True,
                                   args=(cluster, nodes, first_chunk_done, events, seen, stop))
        watcher.start()
        try:
            synth = run_synth(synth_cfg)
        finally:
            stop.set()
            watcher.join(timeout=10)
        result["synth"] = {"output_dir": str(synth.output_dir), "kept": synth.kept, "dropped": synth.dropped,
                           "chunks_done_at_hit": chunks_done.get("at_hit"), "engine_cores_seen": sum(t == "VLLM::EngineCore" for t in seen.values()),
                           "left_running": _left_running(seen)}
        seconds["synth"] = round(time.monotonic() - start - sum(seconds.values()))

        # 2. Training across the nodes; a node holding a worker is removed after the step-2 checkpoint.
        snli_triplets(data_dir / "seeds" / "snli" / "labels.dev").slice(0, 128).to_pandas().to_parquet(
            tmp / "triplets.parquet")
        train_cfg = load_config(None, [
            *common, f"run_dir={tmp / 'train-run'}", f"train.data={tmp / 'triplets.parquet'}",
            "train.model=bundled:all-minilm-l6-v2", "train.precision=fp32", "train.backend=ddp",
            "train.num_workers=2", "train.batch_size=8", "train.max_steps=6", "train.eval_steps=2",
            "train.max_seq_length=24", "train.dev_max_pairs=100", "train.log_every=1", "train.max_failures=2",
            # one thread each: the "nodes" share this machine's cores, each would otherwise take them all
            "train.cpu_threads_per_worker=1"])
        progress = tmp / "train-run" / "train" / "progress.json"

        def after_checkpoint() -> bool:  # step 3 running and the step-2 checkpoint registered
            try:
                running = json.loads(progress.read_text()).get("step", 0) >= 3
            except (OSError, ValueError):
                return False
            return running and registered_checkpoint_step(progress.parent) >= 2

        killer = threading.Thread(target=_recording_errors(_replace_node_when, events), daemon=True, args=(
            cluster, nodes, after_checkpoint, "RayTrainWorker", events))
        killer.start()
        trained = run_train(train_cfg)
        killer.join(timeout=5)
        result["train"] = {"steps": trained.steps, "resumed_from_step": trained.resumed_from_step,
                           "metrics": str(trained.metrics_path)}
        seconds["train"] = round(time.monotonic() - start - sum(seconds.values()))
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
