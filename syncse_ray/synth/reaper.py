"""Ends a vLLM engine's processes once the process that owned the engine is gone.

vLLM's CPU worker process was seen to outlive its engine (its parent died, it kept spinning at ~30% CPU) when a
Ray Data actor holding the engine ended (Ray ends the actor's child processes, not their children). The actor starts this reaper, which waits for the actor's process to
exit, however it exits (graceful, SIGKILL, crash), then SIGKILLs the engine processes it was given, by pid and
creation time (a reused pid is left alone).

    python -m syncse_ray.synth.reaper OWNER_PID OWNER_CREATED PID:CREATED ...
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time

import psutil


def _same_process(pid: int, created: float) -> psutil.Process | None:
    try:
        proc = psutil.Process(pid)
        return proc if abs(proc.create_time() - created) < 0.01 else None
    except psutil.NoSuchProcess:
        return None


def start_reaper() -> None:
    """Called by the engine's owner after the engine started: watch this process, reap its children after it."""
    me = psutil.Process()
    targets = [f"{p.pid}:{p.create_time()}" for p in me.children(recursive=True)]
    if not targets:
        return
    # Started through a shell that exits at once, so the reaper is nobody's child: Ray ends a worker's child
    # processes with the worker, which would take the reaper along before it could act.
    command = shlex.join([sys.executable, "-m", "syncse_ray.synth.reaper", str(me.pid), str(me.create_time()),
                          *targets])
    subprocess.run(["sh", "-c", f"{command} >/dev/null 2>&1 </dev/null &"], check=True, start_new_session=True)


def main(argv: list[str]) -> None:
    owner = _same_process(int(argv[0]), float(argv[1]))
    targets = [(int(pid), float(created)) for pid, created in (t.split(":") for t in argv[2:])]
    while owner is not None and owner.is_running() and owner.status() != psutil.STATUS_ZOMBIE:
        time.sleep(1.0)
    time.sleep(5.0)  # a graceful engine shutdown gets a moment first
    for pid, created in targets:
        proc = _same_process(pid, created)
        if proc is not None:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass


if __name__ == "__main__":
    os.nice(5)
    main(sys.argv[1:])
