"""The one list of stages: what `syncse pipeline` runs in order, what `jobs/<stage>.py` runs alone, and what the
`syncse` command line offers a command for (tests/test_architecture.py checks that).

Every stage has the same shape: `run_<stage>(cfg, progress=None) -> <Stage>Result`, a result with `skipped`
(its output was already complete for this config: stage.json), the skip logic in the stage's own package.
A `Stage` adds what the pipeline shows and records of it: `watch` turns a progress display into the stage's
progress callback, `entry` is what pipeline.json keeps of its result.

To add a stage: its package's `run_<stage>`, a config section, an entry here, a `syncse` command in
syncse_ray/cli/, a jobs/<stage>.py (three lines, like the others) and a name in `pipeline.stages`."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from syncse_ray.config import Config
from syncse_ray.pipeline.console import StageDisplay

StageRun = Callable[..., Any]  # run_<stage>(cfg, progress=None) -> a result with `skipped`


@dataclass(frozen=True)
class Stage:
    name: str
    run: StageRun
    watch: Callable[[Config, StageDisplay], Callable[..., None] | None]  # display -> the stage's progress callback
    entry: Callable[[Config, Any, StageDisplay], dict[str, Any]]  # result -> what pipeline.json keeps

    def run_shown(self, cfg: Config, display: StageDisplay) -> dict[str, Any]:
        """Run the stage with its progress on `display`; returns its pipeline.json entry with `skipped`."""
        result = self.run(cfg, progress=self.watch(cfg, display))
        return {"skipped": result.skipped, **self.entry(cfg, result, display)}


def _lazy(module: str, name: str) -> StageRun:
    """`module.name`, imported when the stage runs (synth and train import Ray; listing stages must not)."""
    def run(cfg: Config, progress: Callable[..., None] | None = None) -> Any:
        return getattr(importlib.import_module(module), name)(cfg, progress=progress)

    run.__qualname__ = run.__name__ = name
    run.__module__ = module
    return run


def _watch_synth(cfg: Config, display: StageDisplay) -> Callable[..., None]:
    totals = {"requests": 0, "kept": 0, "dropped": 0, "output_tokens": 0, "retries": 0}
    started = time.time()
    endpoint = cfg.synth.writer.kind == "openai"

    def progress(phase: str, done: int, total: int, summary: dict[str, Any] | None = None) -> None:
        if summary:
            for k in totals:
                totals[k] += summary.get(k, 0)
        seconds = max(time.time() - started, 1e-9)
        rates = {"out tok/s": f"{totals['output_tokens'] / seconds:.1f}"}
        if endpoint:  # the endpoint writer: its request rate and the retries of finished chunks
            rates = {"req/s": f"{totals['requests'] / seconds:.2f}", **rates, "retries": totals["retries"]}
        display.update(done, total, phase=phase, requests=totals["requests"], kept=totals["kept"],
                       dropped=totals["dropped"], **rates)
    return progress


def _synth_entry(cfg: Config, result: Any, display: StageDisplay) -> dict[str, Any]:
    from syncse_ray.synth.engine import engine_dtype

    engine = cfg.synth.engine
    display.update(kept=result.kept, dropped=result.dropped)
    if cfg.synth.writer.kind == "openai":
        writer = result.manifest.get("writer") or {}
        return {"kept": result.kept, "dropped": result.dropped, "requested": result.requested,
                "writer": "openai", "endpoint": writer.get("endpoint"), "retries": writer.get("retries"),
                "cost_usd": writer.get("cost_usd")}
    return {"kept": result.kept, "dropped": result.dropped, "requested": result.requested,
            # what synth.engine.dtype resolves to here (auto on a GPU: vLLM's own choice)
            "engine_dtype": engine_dtype(engine, on_cpu=engine.num_gpus_per_engine == 0)}


def _watch_train(cfg: Config, display: StageDisplay) -> None:
    from syncse_ray.train.trainer import read_progress

    out = cfg.stage_dir("train")
    display.poll = lambda: read_progress(out)  # the workers write their progress to a file


def _train_entry(cfg: Config, result: Any, display: StageDisplay) -> dict[str, Any]:
    return {"steps": result.steps, "best_step": result.best_step, "best_dev_score": result.best_score,
            "resumed_from_step": result.resumed_from_step, "best_dir": str(result.best_dir),
            "precision": result.precision}


def _watch_eval(cfg: Config, display: StageDisplay) -> Callable[[int, int, str, str], None]:
    def progress(done: int, total: int, model: str, task: str) -> None:
        display.update(done, total, model=model, task=task)
    return progress


def _eval_entry(cfg: Config, result: Any, display: StageDisplay) -> dict[str, Any]:
    from syncse_ray.eval.results import sts_scores

    avg = sts_scores(result.results).get("avg")
    if avg is not None:
        display.update(**{"STS avg": f"{avg:.2f}"})
    return {"results": str(result.results_path), **({"base_cached": True} if result.base_cached else {})}


def _no_progress(cfg: Config, display: StageDisplay) -> None:
    return None


def _index_entry(cfg: Config, result: Any, display: StageDisplay) -> dict[str, Any]:
    return {"index": str(result.index_dir)}


STAGES: dict[str, Stage] = {stage.name: stage for stage in (
    Stage("synth", _lazy("syncse_ray.synth.pipeline", "run_synth"), _watch_synth, _synth_entry),
    Stage("train", _lazy("syncse_ray.train.trainer", "run_train"), _watch_train, _train_entry),
    Stage("eval", _lazy("syncse_ray.eval.stage", "run_eval_stage"), _watch_eval, _eval_entry),
    Stage("index", _lazy("syncse_ray.serve.index_stage", "run_index"), _no_progress, _index_entry),
)}
