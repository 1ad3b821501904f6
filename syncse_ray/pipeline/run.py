"""`syncse pipeline CONFIG`: synthesize -> train -> evaluate -> run report, optionally index and serve.

Each stage records the settings that produced its output (`stage.json`, see stage_marker) and is skipped when
they match, so rerunning a finished pipeline does no work and rerunning a failed one continues where it stopped:
synthesis resumes its unfinished chunks, training resumes from its latest checkpoint.

    <run_dir>/config.yaml      the resolved config of the last run
    <run_dir>/pipeline.json    per stage: ran or skipped, wall time
    <run_dir>/logs/<stage>.log what the stage printed (with a `RunConsole`: the CLI and jobs/ pass one)
    <run_dir>/synth/ train/ eval/ [index/]
    <run_dir>/report.md        + report_*.png

The stages and their order are `syncse_ray.pipeline.stages.STAGES`; each stage's own package decides whether it
is done (its result's `skipped`); the record is `syncse_ray.pipeline.record`.

With `pipeline.rounds > 1` the stages run once per round in <run_dir>/round_<r>/ (syncse_ray.pipeline.rounds).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from syncse_ray.config import Config, dump_config
from syncse_ray.errors import SyncseError
from syncse_ray.pipeline.console import RunConsole
from syncse_ray.pipeline.record import RECORD_FILE, PipelineResult, read_record, run_stage
from syncse_ray.pipeline.stages import STAGES
from syncse_ray.runtime.ray_env import disconnect_ray, stop_local_ray

log = logging.getLogger(__name__)

__all__ = ["RECORD_FILE", "PipelineError", "PipelineResult", "run_pipeline", "summary_rows"]


class PipelineError(SyncseError, RuntimeError):
    """A pipeline that cannot run as configured; the message says what to change."""


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
    record = read_record(run_dir)
    result = PipelineResult(run_dir=run_dir)
    with console.run(run_dir) if console else contextlib.nullcontext():
        try:
            if cfg.pipeline.rounds > 1:
                from syncse_ray.pipeline.rounds import run_rounds

                cfg = run_rounds(cfg, record, result, console)  # the best round's config: its model is the run's
                if "index" in stages:
                    run_stage("index", STAGES["index"].run_shown, cfg, record, result, console)
            else:
                for name in stages:
                    run_stage(name, STAGES[name].run_shown, cfg, record, result, console)
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
        from syncse_ray.serve.index_stage import index_dir
        from syncse_ray.train.outputs import evaluated_model

        model = cfg.serve.model or evaluated_model(cfg)
        index = index_dir(cfg) if cfg.pipeline.build_index else cfg.serve.index
        serve_forever(cfg.serve.model_copy(update={"model": model, "index": index, "corpus": None}), cfg.ray)
    return result
