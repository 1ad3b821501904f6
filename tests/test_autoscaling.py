"""Autoscaling on one machine: a head with Ray's fake multi-node provider and a worker node type advertising a GPU
(min 0, max 1). Synthesis asks for a GPU per engine: a worker node appears on demand, the run finishes, and the
node scales back to zero after the idle timeout. The scenario runs in its own process (`tests/_autoscaling.py`)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as pads
import pytest

pytestmark = pytest.mark.slow  # a Ray head with an autoscaler, a fake worker node, a vLLM engine



@pytest.mark.timeout(1200)
def test_a_gpu_node_appears_on_demand_and_scales_back_to_zero(tmp_path, data_dir, cache_dir, run_scenario):
    result = run_scenario("_autoscaling.py", tmp_path, str(data_dir), str(cache_dir), timeout=1000)
    print(json.dumps({k: v for k, v in result.items() if not k.startswith("status")}))
    print(result["status_while_up"], result["status_after"], sep="\n")
    assert result["gpu_nodes_before"] == 0 and result["max_gpu_nodes"] == 1 and result["gpu_nodes_after"] == 0
    assert "gpu.worker" in result["status_while_up"]

    synth = Path(result["synth"]["output_dir"])
    rows = [r["id"] for folder in ("data", "dropped")
            for r in pads.dataset(synth / folder, format="parquet").to_table(columns=["id"]).to_pylist()]
    assert len(rows) == len(set(rows)) == 8
