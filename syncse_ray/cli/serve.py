"""`syncse serve MODEL ...` (the endpoint, in the foreground) and `syncse index build CORPUS ...` (a saved index)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape

from syncse_ray.cli.common import App, SetOption, console, fail, load_command_config
from syncse_ray.config import ServeConfig
from syncse_ray.config.loader import format_validation_error
from syncse_ray.pipeline.console import VERBOSE_ENV, RunConsole


class _ConsoleHandler(logging.Handler):
    """Log records as plain lines on the terminal (the run console's, which stays on the terminal while the
    process's own output goes to the log file)."""

    def __init__(self, run_console: RunConsole):
        super().__init__()
        self.run_console = run_console

    def emit(self, record: logging.LogRecord) -> None:
        prefix = "[yellow]warning:[/] " if record.levelno >= logging.WARNING else ""
        self.run_console.print(prefix + escape(record.getMessage()), markup=True, highlight=False, soft_wrap=True)


index_app = App(help="FAISS corpus indexes for /v1/search.", no_args_is_help=True)


def serve_command(
    model: Annotated[str | None, typer.Argument(
        help="bundled:<name> or a sentence-transformers folder. Default: the config's serve.model.")] = None,
    corpus: Annotated[Path | None, typer.Option(
        help="Text (one entry a line), JSONL or Parquet corpus to index at start for /v1/search.")] = None,
    index: Annotated[Path | None, typer.Option(help="A saved index (syncse index build) for /v1/search.")] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default 8000).")] = None,
    replicas: Annotated[int | None, typer.Option(help="A fixed number of embedder replicas.")] = None,
    min_replicas: Annotated[int | None, typer.Option(help="Autoscale embedder replicas from this many…")] = None,
    max_replicas: Annotated[int | None, typer.Option(help="…up to this many.")] = None,
    num_gpus: Annotated[float | None, typer.Option(help="GPUs per embedder replica (0: CPU).")] = None,
    api_key_env: Annotated[str | None, typer.Option(
        help="Require 'Authorization: Bearer <key>', the key read from this environment variable.")] = None,
    access_log: Annotated[bool | None, typer.Option(
        "--access-log/--no-access-log", help="Serve's line a request, in the log file (default: off).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help=f"Show Ray's and Serve's output on the terminal "
                                          f"instead of <run_dir>/logs/serve.log (also: {VERBOSE_ENV}=1).")] = False,
    config: Annotated[Path | None, typer.Option(help="YAML config whose serve and ray sections give defaults.")] = None,
    set_: SetOption = None,
) -> None:
    """Serve an encoder: OpenAI-compatible /v1/embeddings, /v1/search, /v1/models, /healthz (Ctrl-C stops).
    The terminal gets where it serves and any warning; what Ray and Serve print goes to <run_dir>/logs/serve.log."""
    cfg = load_command_config(config, set_)
    updates: dict[str, Any] = {key: value for key, value in (
        ("model", model), ("corpus", corpus), ("index", index), ("host", host), ("port", port),
        ("num_replicas", replicas), ("num_gpus_per_replica", num_gpus), ("api_key_env", api_key_env),
        ("access_log", access_log))
        if value is not None}
    if min_replicas is not None or max_replicas is not None:
        if replicas is not None:
            raise fail("give either --replicas or --min-replicas/--max-replicas, not both")
        updates["num_replicas"] = None
        low = min_replicas if min_replicas is not None else cfg.serve.autoscaling.min_replicas
        updates["autoscaling"] = {**cfg.serve.autoscaling.model_dump(), "min_replicas": low,
                                  "max_replicas": max_replicas if max_replicas is not None
                                  else max(low, cfg.serve.autoscaling.max_replicas)}
    try:
        settings = ServeConfig.model_validate({**cfg.serve.model_dump(), **updates})
    except ValidationError as exc:
        raise fail(format_validation_error(exc, "command line", "serve")) from None
    if not settings.model:
        raise fail("no model: pass MODEL or set serve.model in the config")

    from syncse_ray.serve.app import log, serve_forever

    run_console = RunConsole(verbose=verbose or None)
    with run_console.run(cfg.run_dir, log_name="serve"):
        handler = _ConsoleHandler(run_console)  # sizing and resource warnings stay on the terminal
        log.addHandler(handler)
        log.setLevel(logging.INFO)

        def announce(base: str) -> None:
            run_console.print(f"[green]serving[/] {settings.model} at {base}/v1 (embeddings, search, models); "
                              f"health at {base}/healthz. Ctrl-C stops.", highlight=False, soft_wrap=True)
            if run_console.quiet:
                run_console.print(f"[dim]logs[/] {run_console.log_dir / 'serve.log'}", highlight=False,
                                  soft_wrap=True)

        try:
            serve_forever(settings, cfg.ray, on_ready=announce)
        finally:
            log.removeHandler(handler)


@index_app.command("build")
def index_build(
    corpus: Annotated[Path, typer.Argument(help="Text (one entry a line), JSONL or Parquet corpus.")],
    model: Annotated[str, typer.Option(help="bundled:<name> or a sentence-transformers folder.")],
    out: Annotated[Path, typer.Option(help="Folder to write (index.faiss, docs.parquet, meta.json).")],
    text_field: Annotated[str, typer.Option(help="JSONL field / Parquet column holding the text.")] = "text",
    id_field: Annotated[str, typer.Option(help="JSONL field / Parquet column holding the id.")] = "id",
    batch_size: Annotated[int, typer.Option(help="Texts per encoding batch.")] = 64,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
) -> None:
    """Embed a corpus and save a FAISS index that `syncse serve --index DIR` loads."""
    from syncse_ray.serve.index import build_index

    start = time.monotonic()
    index = build_index(corpus, model, out, device=device, batch_size=batch_size, text_field=text_field,
                        id_field=id_field)
    console.print(f"[green]indexed[/] {len(index)} entries ({index.dimension}-d) from {corpus} -> {out} "
                  f"({time.monotonic() - start:.1f} s)")
