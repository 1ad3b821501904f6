"""Stopping a run on SIGINT (Ctrl-C) or SIGTERM (`kill`, `ray job stop`, a scheduler's preemption) the same way.

Python ends on SIGTERM at once, without `finally` blocks or atexit hooks, so a local Ray cluster, its actors and
their vLLM engines could be left running. Inside `stop_on_signals()` both signals raise `Interrupted` (a
`KeyboardInterrupt`, so Ray Data, Ray Train and every `finally` unwind as they do for Ctrl-C) in the main
thread. Nothing a stage has finished is lost: synthesis writes each chunk's files atomically and training
keeps its checkpoints, so the same command resumes. Pure: no Ray.

    with stop_on_signals():
        try:
            run_pipeline(cfg)
        except KeyboardInterrupt as exc:
            stop = as_interrupted(exc)  # disconnect from Ray, say how to resume, exit with stop.exit_code
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived; `exit_code` is the shell's 128 + signal number."""

    def __init__(self, signum: int):
        self.signum = signum
        self.name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        super().__init__(f"stopped by {self.name}")


_active = False  # inside stop_on_signals()
_received: int | None = None  # the last stop signal that arrived


def _raise(signum: int, _frame) -> None:
    global _received
    _received = signum
    raise Interrupted(signum)


def as_interrupted(exc: KeyboardInterrupt) -> Interrupted:
    """What stopped the run: `exc` itself, or (when a library caught ours and raised a plain KeyboardInterrupt,
    as Ray Train does) the signal that arrived last, SIGINT if none did."""
    return exc if isinstance(exc, Interrupted) else Interrupted(_received or signal.SIGINT)


def reclaim_signals() -> None:
    """Install the handlers again inside `stop_on_signals()`: `ray.init` installs a C++ handler that aborts the
    process on SIGTERM (exit -6, no cleanup), so `init_ray` calls this after it."""
    if _active and threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:
            signal.signal(sig, _raise)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise `Interrupted` while the block runs; the previous handlers come back after.
    Outside the main thread (where Python cannot set handlers) it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    global _active
    previous = {sig: signal.signal(sig, _raise) for sig in STOP_SIGNALS}
    _active = True
    try:
        yield
    finally:
        _active = False
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def resume_hint(run_dir: object, stop: Interrupted) -> str:
    """The one line a stopped run ends with."""
    return (f"stopped by {stop.name}: finished synthesis chunks and training checkpoints are kept in {run_dir}; "
            "run the same command again to resume")
