"""The command line: the `syncse` app (`main.py`), what every command shares (`common.py`), one module of commands
a stage (`synth.py`, `train.py`, `eval.py`, `serve.py`, `data.py`) and the `ray job submit` entrypoints
(`jobs.py`, used by jobs/*.py). The top layer: nothing below imports it.

`syncse = "syncse_ray.cli:app"` (pyproject) and `python -m syncse_ray.cli` both reach `app`.
"""

from __future__ import annotations

__all__ = ["app"]


def __getattr__(name: str):
    # Lazy: a job (cli/jobs.py) need not build the typer app.
    if name in __all__:
        from syncse_ray.cli import main

        return getattr(main, name)
    raise AttributeError(name)
