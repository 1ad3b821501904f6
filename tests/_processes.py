"""Which processes a fault test may kill: its own. Under pytest-xdist another worker's Ray cluster trains and
serves beside this one on the same machine, so a process is this test's only if it descends from this process
(a local Ray cluster's raylet is a child of its driver, and its workers children of the raylet)."""

from __future__ import annotations


def own_live_processes(title: str) -> list[int]:
    """Pids of the live (not zombie) descendants of this process whose command line holds `title` (Ray titles an
    actor's process after its class: `ray::RayTrainWorker`, `ServeReplica:app:Deployment`)."""
    import psutil

    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if title in " ".join(proc.cmdline()) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found
