"""Stopping a process started in a session of its own (`start_new_session=True`) with everything in its group:
SIGTERM for a clean stop, then SIGKILL for whatever is left. Shared by conftest fixtures and the standalone
scenario scripts (which run without conftest)."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_process_group(proc: subprocess.Popen, timeout_s: float = 30) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass
