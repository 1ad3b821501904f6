"""`syncse pipeline CONFIG`: synthesize -> train -> evaluate -> run report, optionally index and serve.

Each stage records the settings that produced its output (`stage.json`, see stage_marker) and is skipped when
they match, so rerunning a finished pipeline does no work and rerunning a failed one continues where it stopped:
synthesis resumes its unfinished chunks, training resumes from its latest checkpoint.

    <run_dir>/config.yaml      the resolved config of the last run
    <run_dir>/pipeline.json    per stage: ran or skipped, wall time
    <run_dir>/synth/ train/ eval/ [index/]
    <run_dir>/report.md        + report_*.png

With `pipeline.rounds > 1` the stages run once per round in <run_dir>/round_<r>/ (syncse_ray.rounds).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syncse_ray import stage_marker
from syncse_ray.config import Config, dump_config
from syncse_ray.config.base import output_settings
from syncse_ray.errors import SyncseError
from syncse_ray.io import write_json_atomic
from syncse_ray.ray_env import stop_local_ray

log = logging.getLogger(__name__)

RECORD_FILE = "pipeline.json"


class PipelineError(SyncseError, RuntimeError):
    """A pipeline that cannot run as configured; the message says what to change."""


@dataclass
class PipelineResult:
    run_dir: Path
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {"status", "seconds", ...}
    report: Path | None = None

    @property
    def ran(self) -> list[str]:
        return [name for name, s in self.stages.items() if s["status"] == "ran"]


def trained_model_dir(cfg: Config) -> Path:
    return cfg.stage_dir("train") / "best"


def _eval_model(cfg: Config) -> str:
    if cfg.eval.model:
        return cfg.eval.model
    best = trained_model_dir(cfg)
    if not (best / "modules.json").is_file():
        raise PipelineError(f"eval.model is not set and there is no trained model at {best}: run the train "
                            "stage first or set eval.model")
    return str(best.resolve())


def _upstream_version(cfg: Config, model: str) -> str | None:
    """Which training run produced `model` (so a retrained model is evaluated again)."""
    if Path(model).resolve() == trained_model_dir(cfg).resolve():
        marker = stage_marker.read_marker(cfg.stage_dir("train"))
        return marker["fingerprint"] if marker else None
    return None


def run_eval_stage(cfg: Config) -> tuple[dict[str, Any], bool]:
    """Evaluate the trained (or configured) model on eval.tasks; returns (results, skipped)."""
    from syncse_ray.eval import run_eval
    from syncse_ray.eval.results import load_results

    model = _eval_model(cfg)
    out = cfg.stage_dir("eval")
    settings = {"eval": output_settings(cfg.eval), "model": model,
                "model_version": _upstream_version(cfg, model), "data_dir": str(Path(cfg.data_dir).resolve())}
    if stage_marker.is_done(out, settings) and (out / "results.json").is_file():
        return load_results(out / "results.json"), True
    ev = cfg.eval
    results = run_eval(model, ev.tasks, cfg.data_dir, out, pooler=ev.pooler, batch_size=ev.batch_size,
                       max_seq_length=ev.max_seq_length, served_model=ev.served_model,
                       mteb_source=ev.mteb_source, kfold=ev.kfold, cache_dir=cfg.cache_dir)
    stage_marker.mark_done(out, "eval", settings)
    from syncse_ray.train.card import update_model_card
    update_model_card(model, out)  # the model card of a syncse-ray folder gets the STS table
    return results, False


def base_eval_dir(cfg: Config) -> Path:
    return cfg.stage_dir("eval") / "base"


def run_base_eval(cfg: Config) -> tuple[dict[str, Any], bool]:
    """The encoder before training (train.model, train.pooler) on eval.tasks, into <eval dir>/base; skipped when
    done with the same settings (it does not depend on the data or the training run)."""
    from syncse_ray.eval import run_eval
    from syncse_ray.eval.results import load_results

    out = base_eval_dir(cfg)
    ev = cfg.eval
    # cls: a fresh MLP before training would be noise; score the plain CLS vector
    pooler = "cls_before_pooler" if cfg.train.pooler == "cls" else cfg.train.pooler
    settings = {"model": cfg.train.model, "pooler": pooler, "tasks": ev.tasks, "batch_size": ev.batch_size,
                "max_seq_length": ev.max_seq_length, "data_dir": str(Path(cfg.data_dir).resolve())}
    if stage_marker.is_done(out, settings) and (out / "results.json").is_file():
        return load_results(out / "results.json"), True
    results = run_eval(cfg.train.model, ev.tasks, cfg.data_dir, out, pooler=pooler, batch_size=ev.batch_size,
                       max_seq_length=ev.max_seq_length, cache_dir=cfg.cache_dir)
    stage_marker.mark_done(out, "eval-base", settings)
    return results, False


def index_dir(cfg: Config) -> Path:
    return cfg.run_dir / "index"


def run_index_stage(cfg: Config) -> tuple[Path, bool]:
    """Embed serve.corpus with the trained (or serve.model) encoder into <run_dir>/index; returns (dir, skipped)."""
    from syncse_ray.serve.index import build_index

    if cfg.serve.corpus is None:
        raise PipelineError("the index stage needs serve.corpus (a text/JSONL/Parquet file to index)")
    model = cfg.serve.model or _eval_model(cfg)
    out = index_dir(cfg)
    settings = {"corpus": str(Path(cfg.serve.corpus).resolve()), "model": model,
                "model_version": _upstream_version(cfg, model),
                "fields": [cfg.serve.corpus_text_field, cfg.serve.corpus_id_field]}
    if stage_marker.is_done(out, settings):
        return out, True
    build_index(cfg.serve.corpus, model, out, text_field=cfg.serve.corpus_text_field,
                id_field=cfg.serve.corpus_id_field)
    stage_marker.mark_done(out, "index", settings)
    return out, False


def _run_synth(cfg: Config) -> dict[str, Any]:
    from syncse_ray.synth import run_synth

    result = run_synth(cfg)
    return {"skipped": result.skipped, "kept": result.kept, "dropped": result.dropped,
            "requested": result.requested}


def _run_train(cfg: Config) -> dict[str, Any]:
    from syncse_ray.train import run_train

    out = cfg.stage_dir("train")
    before = stage_marker.read_marker(out)
    result = run_train(cfg)
    after = stage_marker.read_marker(out)
    skipped = before is not None and after is not None and before["finished_at"] == after["finished_at"]
    return {"skipped": skipped, "steps": result.steps, "best_step": result.best_step,
            "best_dev_score": result.best_score, "resumed_from_step": result.resumed_from_step,
            "best_dir": str(result.best_dir)}


def _run_eval(cfg: Config) -> dict[str, Any]:
    base_skipped = True
    if cfg.eval.compare_base and not cfg.eval.model:
        _, base_skipped = run_base_eval(cfg)
    _, skipped = run_eval_stage(cfg)
    return {"skipped": skipped and base_skipped, "results": str(cfg.stage_dir("eval") / "results.json")}


def _run_index(cfg: Config) -> dict[str, Any]:
    out, skipped = run_index_stage(cfg)
    return {"skipped": skipped, "index": str(out)}


STAGE_RUNNERS: dict[str, Callable[[Config], dict[str, Any]]] = {
    "synth": _run_synth, "train": _run_train, "eval": _run_eval, "index": _run_index,
}


def _check_plan(cfg: Config) -> list[str]:
    stages = list(cfg.pipeline.stages)
    if "train" in stages and "synth" not in stages and cfg.train.data is None:
        synth_data = cfg.stage_dir("synth") / "data"
        if not synth_data.is_dir():
            raise PipelineError("pipeline.stages has train without synth, and train.data is not set: set "
                                "train.data to a triplet/pair/sentence file, or add synth")
    if cfg.pipeline.build_index:
        if cfg.serve.corpus is None:
            raise PipelineError("pipeline.build_index is on but serve.corpus is not set")
        stages.append("index")
    return stages


def _read_record(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RECORD_FILE
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            pass
    return {"stages": {}}


def write_record(run_dir: Path, record: dict[str, Any]) -> None:
    write_json_atomic(run_dir / RECORD_FILE, record)


def run_stage(key: str, runner: Callable[[Config], dict[str, Any]], cfg: Config, record: dict[str, Any],
              result: PipelineResult, on_stage: Callable[[str, dict[str, Any]], None] | None) -> dict[str, Any]:
    """Run one stage (`runner`), record it under `key` in pipeline.json and `result`; returns its entry."""
    if key.rsplit("/", 1)[-1] == "eval":
        stop_local_ray()  # evaluation runs in this process, without Ray
    started = time.time()
    info = runner(cfg)
    seconds = time.time() - started
    previous = record["stages"].get(key, {})
    status = "skipped" if info.pop("skipped") else "ran"
    entry = {"status": status, "seconds": seconds, **info,
             # the wall time of the run that produced the output, for the report
             "work_seconds": previous.get("work_seconds", seconds) if status == "skipped" else seconds}
    record["stages"][key] = entry
    result.stages[key] = entry
    write_record(Path(cfg.run_dir), record)
    if on_stage:
        on_stage(key, entry)
    return entry


def run_pipeline(cfg: Config, *, on_stage: Callable[[str, dict[str, Any]], None] | None = None) -> PipelineResult:
    """Run the configured stages in order (module docstring); `on_stage(name, info)` is called after each.
    Stages that need Ray join or start it themselves (syncse_ray.ray_env.init_ray), so a rerun whose stages are
    all done starts nothing."""
    from syncse_ray.report import write_report

    stages = _check_plan(cfg)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_config(cfg))
    record = _read_record(run_dir)
    result = PipelineResult(run_dir=run_dir)
    if cfg.pipeline.rounds > 1:
        from syncse_ray.rounds import run_rounds

        cfg = run_rounds(cfg, record, result, on_stage)  # the best round's config: its model is the run's
        if "index" in stages:
            run_stage("index", STAGE_RUNNERS["index"], cfg, record, result, on_stage)
    else:
        for name in stages:
            run_stage(name, STAGE_RUNNERS[name], cfg, record, result, on_stage)
    result.report = write_report(cfg, record)
    if cfg.pipeline.serve:
        from syncse_ray.serve.app import serve_forever

        model = cfg.serve.model or _eval_model(cfg)
        index = index_dir(cfg) if cfg.pipeline.build_index else cfg.serve.index
        serve_forever(cfg.serve.model_copy(update={"model": model, "index": index, "corpus": None}), cfg.ray)
    return result
