"""The eval stage of a run: the trained (or configured) model on eval.tasks into <run_dir>/eval, and with
`eval.compare_base` the encoder before training into <run_dir>/eval/base. Each is skipped when done with the same
settings (stage.json). Used alike by `syncse pipeline`, `jobs/eval.py` and `syncse eval --config` without a model.
No Ray."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncse_ray.config import Config
from syncse_ray.config.base import output_settings
from syncse_ray.runtime import stage_marker
from syncse_ray.train.outputs import evaluated_model, model_version

RESULTS_FILE = "results.json"

# progress(done, total, model, task): after each task; `model` is "base" or "trained", the counts over both runs
EvalProgress = Callable[[int, int, str, str], None]
TaskProgress = Callable[[int, int, str], None]


@dataclass
class EvalStageResult:
    results: dict[str, Any]  # the trained model's results.json (syncse_ray.eval.results)
    results_path: Path
    base: dict[str, Any] | None = None  # the untrained encoder's results (eval.compare_base)
    skipped: bool = False  # every evaluation was already done for this config

    @property
    def base_cached(self) -> bool:
        """The untrained encoder's scores came from the score cache (its model was not loaded)."""
        return bool(self.base and self.base.get("cached"))


def base_eval_dir(cfg: Config) -> Path:
    return cfg.stage_dir("eval") / "base"


def run_eval_stage(cfg: Config, progress: EvalProgress | None = None) -> EvalStageResult:
    """Evaluate the run's model (eval.model, else the trained model), and first the untrained encoder when
    eval.compare_base is on and eval.model is not set; the trained model's card gets the STS table."""
    evaluated_model(cfg)  # no model to evaluate: say so before scoring the base encoder
    with_base = cfg.eval.compare_base and not cfg.eval.model
    runs = (["base"] if with_base else []) + ["trained"]

    def progress_of(i: int) -> TaskProgress | None:
        if progress is None:
            return None

        def task_done(done: int, total: int, task: str) -> None:
            progress(i * total + done, len(runs) * total, runs[i], task)
        return task_done

    base, base_skipped = None, True
    if with_base:
        base, base_skipped = run_base_eval(cfg, progress_of(0))
    results, skipped = _run_model_eval(cfg, progress_of(len(runs) - 1))
    return EvalStageResult(results=results, results_path=cfg.stage_dir("eval") / RESULTS_FILE, base=base,
                           skipped=skipped and base_skipped)


def _run_model_eval(cfg: Config, progress: TaskProgress | None) -> tuple[dict[str, Any], bool]:
    """The run's model on eval.tasks; returns (results, skipped)."""
    from syncse_ray.eval.results import load_results
    from syncse_ray.eval.runner import run_eval

    model = evaluated_model(cfg)
    out = cfg.stage_dir("eval")
    settings = {"eval": output_settings(cfg.eval), "model": model,
                "model_version": model_version(cfg, model), "data_dir": str(Path(cfg.data_dir).resolve())}
    if stage_marker.is_done(out, settings) and (out / RESULTS_FILE).is_file():
        return load_results(out / RESULTS_FILE), True
    ev = cfg.eval
    results = run_eval(model, ev.tasks, cfg.data_dir, out, pooler=ev.pooler, batch_size=ev.batch_size,
                       max_seq_length=ev.max_seq_length, served_model=ev.served_model,
                       mteb_source=ev.mteb_source, kfold=ev.kfold, cache_dir=cfg.cache_dir,
                       show_progress=progress is None, progress=progress, precision=ev.precision)
    stage_marker.mark_done(out, "eval", settings)
    from syncse_ray.train.card import update_model_card
    update_model_card(model, out)  # the model card of a syncse-ray folder gets the STS table
    return results, False


def run_base_eval(cfg: Config, progress: TaskProgress | None = None) -> tuple[dict[str, Any], bool]:
    """The encoder before training (train.model, train.pooler) on eval.tasks, into <eval dir>/base; returns
    (results, skipped): skipped when done with the same settings (it does not depend on the data or the training
    run). Its scores are the same in every run folder, so they come from the score cache in cache_dir when any
    run scored them before (syncse_ray.eval.score_cache: results.json then says `"cached": true`, and the model
    is not loaded)."""
    from syncse_ray.eval.results import load_results
    from syncse_ray.eval.runner import run_eval

    out = base_eval_dir(cfg)
    ev = cfg.eval
    # cls: a fresh MLP before training would be noise; score the plain CLS vector
    pooler = "cls_before_pooler" if cfg.train.pooler == "cls" else cfg.train.pooler
    settings = {"model": cfg.train.model, "pooler": pooler, "tasks": ev.tasks, "batch_size": ev.batch_size,
                "max_seq_length": ev.max_seq_length, "precision": ev.precision,
                "data_dir": str(Path(cfg.data_dir).resolve())}
    if stage_marker.is_done(out, settings) and (out / RESULTS_FILE).is_file():
        return load_results(out / RESULTS_FILE), True
    results = run_eval(cfg.train.model, ev.tasks, cfg.data_dir, out, pooler=pooler, batch_size=ev.batch_size,
                       max_seq_length=ev.max_seq_length, cache_dir=cfg.cache_dir,
                       show_progress=progress is None, progress=progress, precision=ev.precision,
                       score_cache=True)
    stage_marker.mark_done(out, "eval-base", settings)
    return results, False
