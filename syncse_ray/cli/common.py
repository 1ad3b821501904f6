"""What every `syncse` command shares: the console, the config argument and --set option, error exits.

Kept apart from main.py so each stage's commands (cli/<stage>.py) can import it while main.py imports them."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from syncse_ray.config import Config, load_config
from syncse_ray.errors import SyncseError

console = Console()
err_console = Console(stderr=True)

ConfigPath = Annotated[Path, typer.Argument(help="YAML config file (see configs/).")]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config value, e.g. --set train.lr=1e-5 (repeatable)."),
]


def fail(message: str, code: int = 2) -> typer.Exit:
    # soft_wrap: the message stays one line (no hard breaks at the terminal width), whatever its length
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def load_command_config(config: Path | None, overrides: list[str] | None) -> Config:
    """Load a config for a command (a bad file or override is a `ConfigError`: one line, exit 2); warn once for
    each explicit bf16 that will run on a CPU without native bf16."""
    cfg = load_config(config, overrides or [])
    from syncse_ray.hardware import cpu_flags_here, slow_precision_warning
    from syncse_ray.runtime.env_report import precision_settings

    for key, value, device in precision_settings(cfg):
        if value != "bf16" or device != "cpu":
            continue  # only an explicit bf16 on a CPU can be the slow case; nothing to read for the rest
        message = slow_precision_warning(value, device=device, cpu_flags=cpu_flags_here())
        if message:
            err_console.print(f"[yellow]warning:[/] {key}: {message}", highlight=False, soft_wrap=True)
    return cfg


class App(typer.Typer):
    """`typer.Typer` whose commands end on an expected error (`SyncseError`) with its message as one line and its
    exit code; anything else keeps its traceback."""

    def command(self, *args, **kwargs):
        register = super().command(*args, **kwargs)

        def decorator(fn):
            @functools.wraps(fn)
            def run(*a, **kw):
                try:
                    return fn(*a, **kw)
                except SyncseError as exc:
                    raise fail(str(exc), exc.exit_code) from None

            register(run)
            return fn

        return decorator
