"""The `syncse` command line. Each stage adds its command here; every command has --help."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from syncse_ray.cli.common import App, ConfigPath, SetOption, console, fail, load_command_config
from syncse_ray.cli.data import data_app
from syncse_ray.config import dump_config
from syncse_ray.models.references import BUNDLED, bundled_status, prepare_bundled
from syncse_ray.pipeline.console import VERBOSE_ENV, RunConsole

app = App(
    name="syncse",
    help="SynCSE on Ray: synthesize contrastive data with an LLM, train, evaluate and serve sentence encoders.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
models_app = App(help="Bundled offline models and model references.", no_args_is_help=True)
config_app = App(help="Inspect configs.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")

@config_app.command("show")
def config_show(config: ConfigPath, set_: SetOption = None) -> None:
    """Print the resolved config (defaults filled in, overrides applied) as YAML."""
    cfg = load_command_config(config, set_)
    typer.echo(dump_config(cfg), nl=False)


@models_app.command("list")
def models_list(
    cache_dir: Annotated[Path | None, typer.Option(help="Where converted models are cached.")] = None,
) -> None:
    """List the bundled models, whether they are installed and prepared, and where."""
    table = Table(title="bundled models (use as model: bundled:<name>)")
    for col in ("reference", "kind", "status", "package", "path"):
        table.add_column(col, overflow="fold")
    for row in bundled_status(cache_dir):
        table.add_row(row["reference"], row["kind"], row["status"], row["package"], row["path"])
    console.print(table)


@models_app.command("prepare")
def models_prepare(
    names: Annotated[list[str] | None, typer.Argument(help="Bundled model names (default: all).")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Where converted models are cached.")] = None,
    force: Annotated[bool, typer.Option(help="Convert again even if a cached copy exists.")] = False,
) -> None:
    """Make bundled models usable offline (SmolLM2: GGUF -> bf16 folder, once)."""
    for name in names or list(BUNDLED):
        name = name.removeprefix("bundled:")
        path = prepare_bundled(name, cache_dir, force=force)
        console.print(f"[green]ready[/] bundled:{name} -> {path}")


# Stage commands: each stage keeps its commands in syncse_ray/cli/<stage>.py and is registered here, one line each.
# (stage registrations below)
from syncse_ray.cli.train import train_command

app.command("train")(train_command)
from syncse_ray.cli.synth import synth_command

app.command("synth")(synth_command)
from syncse_ray.cli.eval import eval_command

app.command("eval")(eval_command)
from syncse_ray.cli.serve import index_app, serve_command

app.command("serve")(serve_command)
app.add_typer(index_app, name="index")


@app.command("pipeline")
def pipeline_command(
    config: ConfigPath, set_: SetOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help=f"Show every log on the terminal instead of "
                                          f"<run_dir>/logs/ (also: {VERBOSE_ENV}=1).")] = False,
) -> None:
    """Synthesize -> train -> evaluate -> report (stages whose output matches the config are skipped). One
    progress line a stage; what Ray, vLLM, DeepSpeed and the models print goes to <run_dir>/logs/<stage>.log."""
    cfg = load_command_config(config, set_)
    from syncse_ray.pipeline.run import run_pipeline
    from syncse_ray.runtime.interrupts import as_interrupted, resume_hint, stop_on_signals

    with stop_on_signals():
        try:
            run_pipeline(cfg, console=RunConsole(verbose=verbose or None, console=None))
        except KeyboardInterrupt as exc:  # run_pipeline has left Ray already
            stop = as_interrupted(exc)
            raise fail(resume_hint(cfg.run_dir, stop), stop.exit_code) from None


@app.command("env")
def env_command(
    config: Annotated[Path | None, typer.Argument(help="A config whose precision settings to resolve "
                                                       "(default: every setting at its default).")] = None,
    set_: SetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (for a bug report or a script).")] = False,
) -> None:
    """This machine for a bug report: CPU and its capability (AVX2 / AVX-512 / AMX), cores, memory, GPUs, library
    versions, and what each stage's precision (`auto` by default) resolves to here."""
    import json

    from syncse_ray.runtime.env_report import collect

    info = collect(load_command_config(config, set_))
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    cpu = info["cpu"]
    held = f", held to {cpu['capability']} by {cpu['held_by']}" if cpu["held_by"] else ""
    facts = Table(show_header=False, box=None)
    for key, value in (
            ("CPU", f"{cpu['model']}"),
            ("capability", f"{cpu['native_capability']}{held}; native bf16: {'yes' if cpu['native_bf16'] else 'no'}"),
            ("ISA flags", " ".join(cpu["isa_flags"]) or "-"),
            ("cores", str(info["cores"])), ("memory", f"{info['memory_gib']} GiB"), ("OS", info["os"]),
            ("GPUs", ", ".join(info["gpus"]) or "none"),
            *info["versions"].items()):
        facts.add_row(key, value)
    console.print(facts)
    table = Table(title="precision on this machine")
    for col in ("setting", "value", "device", "resolves to", "note"):
        table.add_column(col, overflow="fold")
    for row in info["precision"]:
        table.add_row(*(row[c] for c in ("setting", "value", "device", "resolves to", "note")))
    console.print(table)


@app.command("report")
def report_command(config: ConfigPath, set_: SetOption = None) -> None:
    """Write <run_dir>/report.md (and plots) again from the stage outputs of a run."""
    from syncse_ray.pipeline.report import write_report

    console.print(f"[green]report[/] {write_report(load_command_config(config, set_))}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
