"""The data directory: where it is by default, and the one error every reader raises when a file in it is missing.

The data directory holds the benchmark and seed data (``senteval/``, ``seeds/``; the layout is in README.md and
``syncse_ray/data/fetch.py``). It is the config's ``data_dir``, else ``$SYNCSE_DATA_DIR``, else a user cache folder
(``~/.cache/syncse-ray/data``) that ``syncse data fetch`` fills. No heavy imports: every reader imports this.
"""

from __future__ import annotations

import os
from pathlib import Path

from syncse_ray.errors import SyncseError

DATA_DIR_ENV = "SYNCSE_DATA_DIR"
FETCH_COMMAND = "syncse data fetch"


def user_data_dir() -> Path:
    """Where `syncse data fetch` writes when nothing else is named: ``~/.cache/syncse-ray/data``."""
    return Path.home() / ".cache" / "syncse-ray" / "data"


def default_data_dir() -> Path:
    """``$SYNCSE_DATA_DIR``, else `user_data_dir()`."""
    return Path(os.environ.get(DATA_DIR_ENV) or user_data_dir())


class MissingDataError(SyncseError, FileNotFoundError):
    """A benchmark or seed file is not in the data directory; the message names it and the command that fetches
    it (exit code 2)."""


def fetch_command(data_dir: str | Path | None = None, *extra: str) -> str:
    """The command that fills `data_dir`: ``syncse data fetch``, with ``--to DIR`` unless DIR is the default."""
    parts = [FETCH_COMMAND, *extra]
    if data_dir is not None and Path(data_dir).expanduser().resolve() != default_data_dir().expanduser().resolve():
        parts += ["--to", str(data_dir)]
    return " ".join(parts)


def missing_data(path: str | Path, data_dir: str | Path | None = None, *, what: str = "",
                 extra: tuple[str, ...] = (), cls: type[MissingDataError] = MissingDataError) -> MissingDataError:
    """The one-line error for a data file that is not there (the wording of every reader, in one place):
    ``missing <what> <path> (data dir D); run: syncse data fetch [--to D]``. ``cls``: a reader's own subclass."""
    label = f"{what} " if what else ""
    where = f" (data dir {data_dir})" if data_dir is not None else ""
    return cls(f"missing {label}{path}{where}; run: {fetch_command(data_dir, *extra)}")


def is_inside(path: str | Path, data_dir: str | Path) -> bool:
    """Whether `path` lies below `data_dir` (both resolved; neither needs to exist)."""
    try:
        Path(path).expanduser().resolve().relative_to(Path(data_dir).expanduser().resolve())
        return True
    except ValueError:
        return False
