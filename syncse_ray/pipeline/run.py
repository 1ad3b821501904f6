"""`syncse pipeline CONFIG`: synthesize -> train -> evaluate -> run report, optionally index and serve.

Each stage records the settings that produced its output (`stage.json`, see stage_marker) and is skipped when
they match, so rerunning a finished pipeline does no work and rerunning a failed one continues where it stopped:
synthesis resumes its unfinished chunks, training resumes from its latest checkpoint.

    <run_dir>/config.yaml      the resolved config of the last run
    <run_dir>/pipeline.json    per stage: ran or skipped, wall time
    <run_dir>/logs/<stage>.log what the stage printed (with a `RunConsole`: the CLI and jobs/ pass one)
    <run_dir>/synth/ train/ eval/ [index/]
    <run_dir>/report.md        + report_*.png

With `pipeline.rounds > 1` the stages run once per round in <run_dir>/round_<r>/ (syncse_ray.pipeline.rounds).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syncse_ray.runtime import stage_marker
from syncse_ray.config import Config, dump_config
from syncse_ray.config.base import output_settings
from syncse_ray.pipeline.console import NO_DISPLAY, RunConsole, StageDisplay
from syncse_ray.errors import SyncseError
from syncse_ray.io import write_json_atomic
from syncse_ray.runtime.ray_env import disconnect_ray, stop_local_ray

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


def run_eval_stage(cfg: Config, progress: Callable[[int, int, str], None] | None = None
                   ) -> tuple[dict[str, Any], bool]:
    """Evaluate the trained (or configured) model on eval.tasks; returns (results, skipped). `progress(done,
    total, task)` after each task."""
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
                       mteb_source=ev.mteb_source, kfold=ev.kfold, cache_dir=cfg.cache_dir,
                       show_progress=progress is None, progress=progress, precision=ev.precision)
    stage_marker.mark_done(out, "eval", settings)
    from syncse_ray.train.card import update_model_card
    update_model_card(model, out)  # the model card of a syncse-ray folder gets the STS table
    return results, False


def base_eval_dir(cfg: Config) -> Path:
    return cfg.stage_dir("eval") / "base"


def run_base_eval(cfg: Config, progress: Callable[[int, int, str], None] | None = None
                  ) -> tuple[dict[str, Any], bool]:
    """The encoder before training (train.model, train.pooler) on eval.tasks, into <eval dir>/base; skipped when
    done with the same settings (it does not depend on the data or the training run). Its scores are the same in
    every run folder, so they come from the score cache in cache_dir when any run scored them before
    (syncse_ray.eval.score_cache: results.json then says `"cached": true`, and the model is not loaded)."""
    from syncse_ray.eval import run_eval
    from syncse_ray.eval.results import load_results

    out = base_eval_dir(cfg)
    ev = cfg.eval
    # cls: a fresh MLP before training would be noise; score the plain CLS vector
    pooler = "cls_before_pooler" if cfg.train.pooler == "cls" else cfg.train.pooler
    settings = {"model": cfg.train.model, "pooler": pooler, "tasks": ev.tasks, "batch_size": ev.batch_size,
                "max_seq_length": ev.max_seq_length, "precision": ev.precision,
                "data_dir": str(Path(cfg.data_dir).resolve())}
    if stage_marker.is_done(out, settings) and (out / "results.json").is_file():
        return load_results(out / "results.json"), True
    results = run_eval(cfg.train.model, ev.tasks, cfg.data_dir, out, pooler=pooler, batch_size=ev.batch_size,
                       max_seq_length=ev.max_seq_length, cache_dir=cfg.cache_dir,
                       show_progress=progress is None, progress=progress, precision=ev.precision,
                       score_cache=True)
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


def _run_synth(cfg: Config, display: StageDisplay) -> dict[str, Any]:
    from syncse_ray.synth import run_synth

    totals = {"requests": 0, "kept": 0, "dropped": 0, "output_tokens": 0}
    started = time.time()

    def progress(phase: str, done: int, total: int, summary: dict[str, Any] | None = None) -> None:
        if summary:
            for k in totals:
                totals[k] += summary.get(k, 0)
        display.update(done, total, phase=phase, requests=totals["requests"], kept=totals["kept"],
                       dropped=totals["dropped"],
                       **{"out tok/s": f"{totals['output_tokens'] / max(time.time() - started, 1e-9):.1f}"})

    from syncse_ray.synth.engine import engine_dtype

    engine = cfg.synth.engine
    result = run_synth(cfg, progress=progress)
    display.update(kept=result.kept, dropped=result.dropped)
    return {"skipped": result.skipped, "kept": result.kept, "dropped": result.dropped,
            "requested": result.requested,
            # what synth.engine.dtype resolves to here (auto on a GPU: vLLM's own choice)
            "engine_dtype": engine_dtype(engine, on_cpu=engine.num_gpus_per_engine == 0)}


def _run_train(cfg: Config, display: StageDisplay) -> dict[str, Any]:
    from syncse_ray.train import run_train
    from syncse_ray.train.trainer import read_progress

    out = cfg.stage_dir("train")
    display.poll = lambda: read_progress(out)
    before = stage_marker.read_marker(out)
    result = run_train(cfg)
    after = stage_marker.read_marker(out)
    skipped = before is not None and after is not None and before["finished_at"] == after["finished_at"]
    return {"skipped": skipped, "steps": result.steps, "best_step": result.best_step,
            "best_dev_score": result.best_score, "resumed_from_step": result.resumed_from_step,
            "best_dir": str(result.best_dir), "precision": result.precision}


def _run_eval(cfg: Config, display: StageDisplay) -> dict[str, Any]:
    with_base = cfg.eval.compare_base and not cfg.eval.model
    runs = (["base"] if with_base else []) + ["trained"]

    def progress_of(i: int) -> Callable[[int, int, str], None]:
        def progress(done: int, total: int, task: str) -> None:
            display.update(i * total + done, len(runs) * total, model=runs[i], task=task)
        return progress

    base_skipped, base_cached = True, False
    if with_base:
        base, base_skipped = run_base_eval(cfg, progress_of(0))
        base_cached = bool(base.get("cached"))
    results, skipped = run_eval_stage(cfg, progress_of(len(runs) - 1))
    from syncse_ray.eval.results import sts_scores

    avg = sts_scores(results).get("avg")
    if avg is not None:
        display.update(**{"STS avg": f"{avg:.2f}"})
    return {"skipped": skipped and base_skipped, "results": str(cfg.stage_dir("eval") / "results.json"),
            **({"base_cached": True} if base_cached else {})}


def summary_rows(cfg: Config, result: PipelineResult) -> list[list[str]]:
    """One row a stage for the end-of-run table: stage, status, wall time, what it made."""
    rows = []
    for key, entry in result.stages.items():
        stage = key.rsplit("/", 1)[-1]
        what = ""
        if stage in ("synth", "select"):
            what = f"{entry.get('kept')} triplets kept, {entry.get('dropped')} dropped"
            if entry.get("engine_dtype"):
                what += f" (engine {entry['engine_dtype']})"
        elif stage == "train":
            dev = entry.get("best_dev_score")
            what = f"{entry.get('steps')} steps, best dev {dev:.2f} at step {entry.get('best_step')}" if dev else ""
            if what and entry.get("precision"):
                what += f" ({entry['precision']})"
        elif stage == "eval" and entry.get("results"):
            what = _sts_summary(Path(entry["results"]))
        elif stage == "index":
            what = str(entry.get("index", ""))
        seconds = entry["work_seconds"] if entry["status"] == "skipped" else entry["seconds"]
        rows.append([key, entry["status"], f"{seconds:.0f} s", what])
    return rows


def _sts_summary(results_path: Path) -> str:
    """STS avg (or each STS task run, when not all seven were) before -> after training."""
    from syncse_ray.eval.results import load_results, sts_scores

    base_path = results_path.parent / "base" / "results.json"
    trained, base = sts_scores(results_path), sts_scores(base_path)
    if not trained:
        return f"results in {results_path}"
    tasks = ["avg"] if "avg" in trained else list(trained)
    label = {"avg": "STS avg"}
    text = ", ".join(f"{label.get(t, t)} " + (f"{base[t]:.2f} -> " if t in base else "") + f"{trained[t]:.2f}"
                     for t in tasks)
    if base and load_results(base_path).get("cached"):
        text += " (before training: cached scores)"
    return text


def _run_index(cfg: Config, display: StageDisplay) -> dict[str, Any]:
    out, skipped = run_index_stage(cfg)
    return {"skipped": skipped, "index": str(out)}


StageRunner = Callable[[Config, StageDisplay], dict[str, Any]]
STAGE_RUNNERS: dict[str, StageRunner] = {
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


def run_pipeline(cfg: Config, *, console: RunConsole | None = None) -> PipelineResult:
    """Run the configured stages in order (module docstring). With `console` (the CLI and jobs/ pass one),
    each stage shows one progress display and its output goes to <run_dir>/logs/, and a summary table ends the
    run; without, output goes where it always goes (the Python API). Stages that need Ray join or start it
    themselves (syncse_ray.runtime.ray_env.init_ray), so a rerun whose stages are all done starts nothing."""
    from syncse_ray.pipeline.report import write_report

    stages = _check_plan(cfg)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_config(cfg))
    record = _read_record(run_dir)
    result = PipelineResult(run_dir=run_dir)
    with console.run(run_dir) if console else contextlib.nullcontext():
        try:
            if cfg.pipeline.rounds > 1:
                from syncse_ray.pipeline.rounds import run_rounds

                cfg = run_rounds(cfg, record, result, console)  # the best round's config: its model is the run's
                if "index" in stages:
                    run_stage("index", STAGE_RUNNERS["index"], cfg, record, result, console)
            else:
                for name in stages:
                    run_stage(name, STAGE_RUNNERS[name], cfg, record, result, console)
        except KeyboardInterrupt:
            disconnect_ray()  # Ctrl-C or a stop signal: end its Ray work while the output still goes to the log
            raise
        result.report = write_report(cfg, record)
        if not cfg.pipeline.serve:
            stop_local_ray()  # its shutdown messages go to the log
    if console:
        console.summary(summary_rows(cfg, result), result.report)
    if cfg.pipeline.serve:
        from syncse_ray.serve.app import serve_forever

        model = cfg.serve.model or _eval_model(cfg)
        index = index_dir(cfg) if cfg.pipeline.build_index else cfg.serve.index
        serve_forever(cfg.serve.model_copy(update={"model": model, "index": index, "corpus": None}), cfg.ray)
    return result
