"""Autoscaling on one machine: a head with Ray's fake multi-node provider and a worker node type advertising a GPU
(min 0, max 1). Synthesis asks for a GPU per engine: a worker node appears on demand, the run finishes, and the
node scales back to zero after the idle timeout. The scenario runs in its own process (`tests/_autoscaling.py`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as pads
import pytest

pytestmark = pytest.mark.slow  # a Ray head with an autoscaler, a fake worker node, a vLLM engine

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(1200)
def test_a_gpu_node_appears_on_demand_and_scales_back_to_zero(tmp_path, data_dir, cache_dir, kill_tree):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    log = tmp_path / "scenario.log"
    with log.open("w") as sink:
        proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "_autoscaling.py"), str(tmp_path),
                                 str(data_dir), str(cache_dir)], cwd=REPO, env=env, stdout=sink,
                                stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=1000)
        finally:
            kill_tree(proc)
    out = log.read_text(errors="replace")
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"{log}:\n" + out[-6000:]
    result = json.loads(lines[-1][len("RESULT "):])
    print(json.dumps({k: v for k, v in result.items() if not k.startswith("status")}))
    print(result["status_while_up"], result["status_after"], sep="\n")
    assert result["gpu_nodes_before"] == 0 and result["max_gpu_nodes"] == 1 and result["gpu_nodes_after"] == 0
    assert "gpu.worker" in result["status_while_up"]

    synth = Path(result["synth"]["output_dir"])
    rows = [r["id"] for folder in ("data", "dropped")
            for r in pads.dataset(synth / folder, format="parquet").to_table(columns=["id"]).to_pylist()]
    assert len(rows) == len(set(rows)) == 8
