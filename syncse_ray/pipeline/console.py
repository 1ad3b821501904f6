"""What a person sees while a pipeline runs: one progress display per stage and a summary, nothing else.

Quiet by default: while a run works, the process's stdout and stderr (file descriptors 1 and 2, so Ray's worker
logs, vLLM, DeepSpeed, transformers and every child process started meanwhile) go to `<run_dir>/logs/<stage>.log`
(`pipeline.log` between stages); the terminal gets the displays, on a copy of the original descriptors. On an
interactive terminal a display is a rich progress bar; elsewhere (CI, `ray job submit` logs, a pipe) it is a line
when the progress changed, at most every `SYNCSE_PROGRESS_INTERVAL` seconds (default 30), and every 4 intervals
when it did not. `--verbose` or `SYNCSE_VERBOSE=1` leaves every output on
the terminal (the displays print lines). When a stage fails, the last lines of its log and the log's path are
printed before the error.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from syncse_ray.errors import SyncseError

VERBOSE_ENV = "SYNCSE_VERBOSE"
INTERVAL_ENV = "SYNCSE_PROGRESS_INTERVAL"
LOG_DIR = "logs"
FAILURE_TAIL_LINES = 20


def verbose_from_env() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def _interval() -> float:
    try:
        return max(1.0, float(os.environ.get(INTERVAL_ENV, "30")))
    except ValueError:
        return 30.0


def _has_real_fds() -> bool:
    """Whether stdout and stderr are the process's descriptors 1 and 2 (not a test runner's capture)."""
    try:
        return sys.stdout.fileno() == 1 and sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


MIN_SHARE_FOR_ETA = 0.05


def eta_seconds(seconds: float, done: float | None, total: float | None, base: float = 0.0) -> float | None:
    """Seconds left at the rate of the progress made over the last `seconds` (from `base` done to `done`); None
    once done, and until 5% of the work since `base` is done (the first requests of a synthesis finish after the
    engine's start-up, and one request's rate said 76 minutes for a run of 2)."""
    if done is None or not total or done >= total or done <= base or seconds <= 0:
        return None
    if done - base < MIN_SHARE_FOR_ETA * (total - base):
        return None
    return seconds * (total - done) / (done - base)


class StageDisplay:
    """One stage's progress. Stage code calls `update(completed, total, **info)` (info: short values shown as
    `key value`); a `poll` function, if set, is called on every refresh and returns the same or None.

    The line's ETA is the rate since the total was set (or changed: a new phase) over what is left, so work done
    before (chunks or steps of an earlier, resumed run; an earlier phase) does not count as speed."""

    def __init__(self, console: Console, name: str, interactive: bool, interval: float):
        self.console, self.name, self.interactive, self.interval = console, name, interactive, interval
        self.completed: float | None = None
        self.total: float | None = None
        self.info: dict[str, Any] = {}
        self.poll: Callable[[], tuple[float | None, float | None, dict[str, Any]] | None] | None = None
        self.started = time.time()
        self._base = (self.started, 0.0)  # (when, completed) the ETA's rate is measured from
        self.status = "done"  # the stage sets "skipped" when its output already matched the config
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._progress: Progress | None = None
        self._task = None
        self._thread: threading.Thread | None = None

    # -- what stage code calls
    def update(self, completed: float | None = None, total: float | None = None, **info: Any) -> None:
        with self._lock:
            if total is not None and total != self.total:
                self._base = (time.time(), completed if completed is not None else self.completed or 0.0)
            if completed is not None:
                self.completed = completed
            if total is not None:
                self.total = total
            self.info.update({k: v for k, v in info.items() if v is not None})
        if self._progress is not None:
            self._render()

    # -- lifecycle (RunConsole)
    def start(self) -> None:
        if self.interactive:
            self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                      TextColumn("eta"), TimeRemainingColumn(), console=self.console,
                                      transient=True, redirect_stdout=False, redirect_stderr=False)
            self._task = self._progress.add_task(self.name, total=None, info="")
            self._progress.start()
        self._thread = threading.Thread(target=self._tick, name=f"syncse-display-{self.name}", daemon=True)
        self._thread.start()

    def close(self, status: str) -> float:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._progress is not None:
            self._progress.stop()
        seconds = time.time() - self.started
        colour = {"done": "green", "skipped": "yellow", "failed": "red"}.get(status, "white")
        suffix = " (output matches the config)" if status == "skipped" else ""
        self.console.print(f"{self.name}: [{colour}]{status}[/]{suffix} in {_duration(seconds)}"
                           + (f"  {self._info_text()}" if self.info and status != "skipped" else ""),
                           highlight=False, soft_wrap=True)
        return seconds

    # -- internals
    def _poll(self) -> None:
        if self.poll is None:
            return
        try:
            polled = self.poll()
        except Exception:  # noqa: BLE001 (a display must never end a run)
            return
        if polled is not None:
            completed, total, info = polled
            self.update(completed, total, **info)

    def _info_text(self) -> str:
        return "  ".join(f"{k} {v}" for k, v in self.info.items())

    def _render(self) -> None:
        with self._lock:
            info, completed, total = self._info_text(), self.completed, self.total
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=completed or 0, total=total, info=info)

    def line(self) -> str:
        with self._lock:
            done = "" if self.completed is None else (
                f" {self.completed:g}/{self.total:g}" if self.total else f" {self.completed:g}")
            since, base = self._base
            left = eta_seconds(time.time() - since, self.completed, self.total, base)
            eta = "" if left is None else f" eta {_duration(left)}"
            info = self._info_text()
        return f"{self.name}:{done} {info} elapsed {_duration(time.time() - self.started)}{eta}".replace("  ", " ")

    def _tick(self) -> None:
        # Interactive: poll every second (rich redraws). Otherwise: every `interval` seconds a line when the
        # progress changed, and one every 4 intervals when it did not (so a long step still shows it is alive).
        wait = 1.0 if self.interactive else self.interval
        shown, shown_at = None, time.time()
        while not self._stop.wait(wait):
            self._poll()
            if self.interactive:
                self._render()
                continue
            with self._lock:
                state = (self.completed, self.total, tuple(self.info.items()))
            if state != shown or time.time() - shown_at >= 4 * self.interval - 0.5:
                self.console.print(self.line(), highlight=False, soft_wrap=True)
                shown, shown_at = state, time.time()
        self._poll()


class _NullDisplay:
    """A display that shows nothing (a pipeline run from the Python API)."""

    status = "done"
    poll = None

    def update(self, completed=None, total=None, **info) -> None:
        pass


NO_DISPLAY = _NullDisplay()


class RunConsole:
    """The terminal side of a run: `with rc.run(run_dir):` sends all output to the run's logs, and
    `with rc.stage(name) as display:` shows one stage's progress (module docstring)."""

    def __init__(self, verbose: bool | None = None, console: Console | None = None):
        self.verbose = verbose_from_env() if verbose is None else verbose
        self._given = console
        self.console = console or Console()
        self.log_dir: Path | None = None
        self._saved: tuple[int, int] | None = None
        self._terminal: io.TextIOWrapper | None = None
        self._log_fd: int | None = None
        self._main_log = "pipeline.log"

    @property
    def quiet(self) -> bool:
        return self._saved is not None

    def _point_at(self, path: Path) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        if self._log_fd is not None:
            os.close(self._log_fd)
        self._log_fd = fd

    @contextlib.contextmanager
    def run(self, run_dir: Path, log_name: str = "pipeline") -> Iterator[RunConsole]:
        """Everything the process (and what it starts) prints goes to <run_dir>/logs/ (<log_name>.log outside a
        stage) until the block ends."""
        self.log_dir = Path(run_dir) / LOG_DIR
        self._main_log = f"{log_name}.log"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.verbose or not _has_real_fds():
            yield self
            return
        sys.stdout.flush()
        sys.stderr.flush()
        self._saved = (os.dup(1), os.dup(2))
        interactive = self.console.is_terminal
        self._terminal = open(self._saved[0], "w", closefd=False, buffering=1)  # noqa: SIM115 (closed below)
        if self._given is None:
            self.console = Console(file=self._terminal, force_terminal=interactive or None)
        self._point_at(self.log_dir / self._main_log)
        try:
            yield self
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(self._saved[0], 1)
            os.dup2(self._saved[1], 2)
            for fd in (*self._saved, self._log_fd):
                if fd is not None:
                    os.close(fd)
            self._saved, self._log_fd = None, None
            self._terminal.close()
            self._terminal = None
            if self._given is None:
                self.console = Console()

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[StageDisplay]:
        """One stage: its output into logs/<name>.log (a `/` in the name, as in round_2/train, becomes `_`),
        its display on the terminal; a failure prints the log's last lines and its path, then propagates."""
        log = (self.log_dir or Path(LOG_DIR)) / f"{name.replace('/', '_')}.log"
        if self.quiet:
            self._point_at(log)
        display = StageDisplay(self.console, name, self.console.is_terminal and not self.verbose, _interval())
        display.start()
        try:
            yield display
        except BaseException as exc:
            stopped = isinstance(exc, KeyboardInterrupt)  # Ctrl-C or a stop signal (interrupts.py), not a failure
            display.close("interrupted" if stopped else "failed")
            if self.quiet:
                self._point_at(self.log_dir / self._main_log)
                # bad input is said in one line by the error itself; anything else shows what led to it
                if not stopped and not (isinstance(exc, SyncseError) and exc.exit_code == 2):
                    self.print_tail(log)
            raise
        display.close(display.status)
        if self.quiet:
            self._point_at(self.log_dir / self._main_log)

    def print_tail(self, log: Path, lines: int = FAILURE_TAIL_LINES) -> None:
        try:
            tail = log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return
        self.console.print(f"[dim]last {len(tail)} lines of {log}:[/]", highlight=False, soft_wrap=True)
        for line in tail:
            self.console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)

    def summary(self, rows: list[list[str]], report: Path | None) -> None:
        """The end-of-run table (stage, status, wall time, what it made) and where the report and logs are."""
        from rich.table import Table

        table = Table(title="syncse pipeline", title_justify="left")
        for column, justify in (("stage", "left"), ("status", "left"), ("time", "right"), ("result", "left")):
            table.add_column(column, justify=justify)
        for row in rows:
            table.add_row(*row)
        self.console.print(table)
        if report is not None:
            self.console.print(f"[green]report[/] {report}", highlight=False, soft_wrap=True)
        if self.log_dir is not None and not self.verbose:
            self.console.print(f"[dim]logs[/] {self.log_dir}", highlight=False, soft_wrap=True)

    def print(self, *args: Any, **kwargs: Any) -> None:
        self.console.print(*args, **kwargs)
