"""When a fault test may kill a training run: after Ray Train's controller has registered the checkpoint, not
merely after a worker wrote it. A worker reports a checkpoint and goes on; the controller takes the report on
its next poll and records it in `checkpoint_manager_snapshot.json`. A worker killed in between loses the
checkpoint, and the restarted group begins at step 0 (seen once in CI, in the multi-node test). Shared by tests
and the standalone scenario scripts."""

from __future__ import annotations

import json
from pathlib import Path

from syncse_ray.train.trainer import RAY_RUN_NAME


def registered_checkpoint_step(train_dir: Path) -> int:
    """The step of the latest checkpoint the controller registered for the run in `train_dir` (0: none yet)."""
    snapshot = Path(train_dir) / RAY_RUN_NAME / "checkpoint_manager_snapshot.json"
    try:
        latest = json.loads(snapshot.read_text()).get("latest_checkpoint_result") or {}
    except (OSError, ValueError):
        return 0
    return int((latest.get("metrics") or {}).get("step", 0))
