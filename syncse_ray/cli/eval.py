"""`syncse eval MODEL [--tasks ...] [--data-dir D] [--out DIR]`: evaluate an encoder, print and save the tables."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from syncse_ray.cli.common import SetOption, console, fail, load_command_config
from syncse_ray.config.loader import format_validation_error
from syncse_ray.models.pooling import POOLERS


def eval_command(
    model: Annotated[str | None, typer.Argument(
        help="bundled:<name>, a (sentence-)transformers folder, a hub name, or an http(s)://…/v1 embeddings "
             "endpoint. Default: the config's eval.model, else (with --config) the run's eval stage on its "
             "trained model, as `syncse pipeline` and jobs/eval.py run it.")] = None,
    tasks: Annotated[list[str] | None, typer.Option(
        "--tasks", "-t", help="sts, sts:<name>, sts-dev, transfer, transfer:<name>, rerank, rerank:<name>, "
                              "mteb:<task|sts|reranking>; repeat or comma-separate. Default: the config's "
                              "eval.tasks (sts).")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        help="Benchmark data (senteval/ layout). Default: config data_dir, else $SYNCSE_DATA_DIR, else "
             "~/.cache/syncse-ray/data (syncse data fetch fills it).")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Where results.json and results.md go. Default: eval.output_dir, else <run_dir>/eval.")] = None,
    pooler: Annotated[str | None, typer.Option(
        help=f"For a plain transformers model: {', '.join(POOLERS)}.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Sentences per encoding batch.")] = None,
    served_model: Annotated[str | None, typer.Option(help="Model name for an embeddings endpoint.")] = None,
    mteb_source: Annotated[str | None, typer.Option(help="mteb data: auto, hub or local.")] = None,
    precision: Annotated[str | None, typer.Option(
        help="The weights' dtype: auto (the model's own where this CPU/GPU runs it natively), fp32, bf16, "
             "fp16.")] = None,
    score_cache: Annotated[bool | None, typer.Option(
        "--score-cache/--no-score-cache",
        help="Read and keep the SentEval scores in <cache_dir>/scores, keyed by a hash of the model's files, the "
             "pooler, precision and data. Default: on for bundled: and hub models, off for folders and "
             "endpoints.")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML config whose eval section gives the defaults.")] = None,
    set_: SetOption = None,
) -> None:
    """Evaluate a sentence encoder: SentEval STS (paper protocol), transfer probes, MTEB tasks."""
    cfg = load_command_config(config, set_)
    ev = cfg.eval
    task_list = [t.strip() for spec in tasks or [] for t in spec.split(",") if t.strip()]
    try:  # command-line values win over the config; assignment validates them like the config does
        for key, value in (("model", model), ("pooler", pooler), ("batch_size", batch_size),
                           ("served_model", served_model), ("mteb_source", mteb_source), ("precision", precision),
                           ("tasks", task_list or None)):
            if value is not None:
                setattr(ev, key, value)
        if data_dir is not None:
            cfg.data_dir = data_dir
    except ValidationError as exc:
        raise fail(format_validation_error(exc, "command line", "eval")) from None
    if not ev.model and config is None:
        raise fail("no model: pass MODEL or set eval.model in the config")
    if out is not None:
        ev.output_dir = out
    out_dir = cfg.stage_dir("eval")

    from syncse_ray.eval import render_table, run_eval
    from syncse_ray.eval.score_cache import cacheable_reference

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("syncse_ray.eval")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    if not ev.model:
        # the run's eval stage, as `syncse pipeline` and jobs/eval.py run it: the trained model (and the base
        # encoder with eval.compare_base), skipped when done with the same settings, the model card updated
        from syncse_ray.pipeline.stages import STAGES

        stage = STAGES["eval"].run(cfg)
        typer.echo(render_table(stage.results))
        console.print(f"[green]{'already evaluated' if stage.skipped else 'wrote'}[/] {stage.results_path}")
        return
    results = run_eval(ev.model, ev.tasks, cfg.data_dir, out_dir, pooler=ev.pooler, batch_size=ev.batch_size,
                       max_seq_length=ev.max_seq_length, served_model=ev.served_model,
                       mteb_source=ev.mteb_source, kfold=ev.kfold, cache_dir=cfg.cache_dir,
                       precision=ev.precision,
                       score_cache=cacheable_reference(ev.model) if score_cache is None else score_cache)
    typer.echo(render_table(results))
    cached = results.get("cached_tasks") or []
    console.print(f"[green]wrote[/] {out_dir / 'results.json'} and {out_dir / 'results.md'} "
                  f"({results['seconds']:.0f} s" + (f"; from the score cache: {', '.join(cached)}" if cached else "")
                  + ")")
