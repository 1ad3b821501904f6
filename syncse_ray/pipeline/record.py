"""A run's record: <run_dir>/pipeline.json (per stage: ran or skipped, wall time, what it made) and running one
stage into it with its progress display and log (`run_stage`, used by the run loop and by the rounds)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syncse_ray.config import Config
from syncse_ray.io import write_json_atomic
from syncse_ray.pipeline.console import NO_DISPLAY, RunConsole, StageDisplay
from syncse_ray.runtime.ray_env import stop_local_ray

RECORD_FILE = "pipeline.json"

StageRunner = Callable[[Config, StageDisplay], dict[str, Any]]  # -> its pipeline.json entry with "skipped"


@dataclass
class PipelineResult:
    run_dir: Path
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {"status", "seconds", ...}
    report: Path | None = None

    @property
    def ran(self) -> list[str]:
        return [name for name, s in self.stages.items() if s["status"] == "ran"]


def read_record(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RECORD_FILE
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            pass
    return {"stages": {}}


def write_record(run_dir: Path, record: dict[str, Any]) -> None:
    write_json_atomic(run_dir / RECORD_FILE, record)


def run_stage(key: str, runner: StageRunner, cfg: Config, record: dict[str, Any], result: PipelineResult,
              console: RunConsole | None) -> dict[str, Any]:
    """Run one stage (`runner`) with its display and log, record it under `key` in pipeline.json and `result`;
    returns its entry."""
    with console.stage(key) if console else contextlib.nullcontext(NO_DISPLAY) as display:
        if key.rsplit("/", 1)[-1] == "eval":
            stop_local_ray()  # evaluation runs in this process, without Ray
        started = time.time()
        info = runner(cfg, display)
        seconds = time.time() - started
        if info["skipped"]:
            display.status = "skipped"
    previous = record["stages"].get(key, {})
    status = "skipped" if info.pop("skipped") else "ran"
    entry = {"status": status, "seconds": seconds, **info,
             # the wall time of the run that produced the output, for the report
             "work_seconds": previous.get("work_seconds", seconds) if status == "skipped" else seconds}
    record["stages"][key] = entry
    result.stages[key] = entry
    write_record(Path(cfg.run_dir), record)
    return entry
