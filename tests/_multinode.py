"""The multi-node scenario of `test_multinode.py`, run in a process of its own (its cluster must not meet the
test session's local one): a Ray head that runs only the driver and two worker nodes, all on this machine
(`ray.cluster_utils.Cluster`), the run folder on storage every node sees. The driver joins through
`ray.address`, as a `ray job submit` job does.

1. Synthesis with two vLLM engine actors; once a chunk has finished, the worker node holding an engine is
   removed (its raylet and every process on it killed), and a replacement node joins (what an autoscaler does).
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
NODE_CPUS = 2  # per worker node: a node holds an engine and a helper, or a training worker and more


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
                nodes.append(cluster.add_node(num_cpus=NODE_CPUS))
                events.append({"removed": marker, "pids": pids, "at": time.time()})
                return
        time.sleep(0.3)


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
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0}, shutdown_at_exit=False)
    nodes = [cluster.add_node(num_cpus=NODE_CPUS) for _ in range(2)]
    events: list[dict] = []
    result: dict = {"events": events}
    try:
        common = [f"data_dir={data_dir}", f"cache_dir={cache_dir}", f"ray.address={cluster.address}"]

        # 1. Synthesis across the nodes; a node holding an engine is removed mid-run.
        synth_cfg = load_config(REPO / "configs" / "synth_partial_cpu.yaml", [
            *common, f"run_dir={tmp / 'synth-run'}", "synth.limit=16", "synth.chunk_size=2",
            "synth.engine.num_engines=2", "synth.judge.num_cpus_per_actor=0.5"])
        done = tmp / "synth-run" / "synth" / "work" / "annotate" / "done"
        killer = threading.Thread(target=_replace_node_when, daemon=True, args=(
            cluster, nodes, lambda: any(done.glob("chunk-*.json")), "Generator", events))
        killer.start()
        synth = run_synth(synth_cfg)
        killer.join(timeout=5)
        result["synth"] = {"output_dir": str(synth.output_dir), "kept": synth.kept, "dropped": synth.dropped}

        # 2. Training across the nodes; a node holding a worker is removed after the step-2 checkpoint.
        snli_triplets(data_dir / "seeds" / "snli" / "labels.dev").slice(0, 128).to_pandas().to_parquet(
            tmp / "triplets.parquet")
        train_cfg = load_config(None, [
            *common, f"run_dir={tmp / 'train-run'}", f"train.data={tmp / 'triplets.parquet'}",
            "train.model=bundled:all-minilm-l6-v2", "train.precision=fp32", "train.backend=ddp",
            "train.num_workers=2", "train.batch_size=8", "train.max_steps=6", "train.eval_steps=2",
            "train.max_seq_length=24", "train.dev_max_pairs=100", "train.log_every=1", "train.max_failures=2"])
        progress = tmp / "train-run" / "train" / "progress.json"

        def after_checkpoint() -> bool:  # step 3 running and the step-2 checkpoint registered
            try:
                running = json.loads(progress.read_text()).get("step", 0) >= 3
            except (OSError, ValueError):
                return False
            return running and registered_checkpoint_step(progress.parent) >= 2

        killer = threading.Thread(target=_replace_node_when, daemon=True, args=(
            cluster, nodes, after_checkpoint, "RayTrainWorker", events))
        killer.start()
        trained = run_train(train_cfg)
        killer.join(timeout=5)
        result["train"] = {"steps": trained.steps, "resumed_from_step": trained.resumed_from_step,
                           "metrics": str(trained.metrics_path)}
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
