"""More than one node, on one machine: synthesis and training across a head and worker nodes
(`ray.cluster_utils.Cluster`), a worker node removed mid-synthesis and mid-training (after a checkpoint) and a
replacement node joining. Every input id ends exactly once in the triplets or the dropped rows, and training
finishes from its last checkpoint. The scenario runs in its own process (`tests/_multinode.py`)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as pads
import pytest

pytestmark = pytest.mark.slow  # a three-node Ray cluster, two vLLM engines, a training run



@pytest.mark.timeout(1000)
def test_worker_nodes_removed_mid_synthesis_and_mid_training(tmp_path, data_dir, cache_dir, run_scenario):
    result = run_scenario("_multinode.py", tmp_path, str(data_dir), str(cache_dir), timeout=900)
    removed = [e["removed"] for e in result["events"]]
    assert removed == ["Generator", "RayTrainWorker"], result  # each removal hit the stage it meant to

    synth = Path(result["synth"]["output_dir"])
    rows = [r["id"] for folder in ("data", "dropped")
            for r in pads.dataset(synth / folder, format="parquet").to_table(columns=["id"]).to_pylist()]
    assert len(rows) == len(set(rows)) == 16 and set(rows) == {f"p{i:09d}" for i in range(16)}
    assert result["synth"]["kept"] > 0

    train = result["train"]
    assert train["steps"] == 6 and train["resumed_from_step"] >= 2
    log = [json.loads(line) for line in Path(train["metrics"]).read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == list(range(1, 7))  # no step lost or repeated
