"""The run console: quiet by default (everything the process and its children print goes to the stage logs),
one progress display per stage, a failure shows the log's last lines; `SYNCSE_VERBOSE=1` leaves output alone.
Each case runs in a subprocess of its own, because pytest captures file descriptors 1 and 2 itself."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SNIPPET = textwrap.dedent("""
    import os, subprocess, sys, time
    from pathlib import Path
    from syncse_ray.pipeline.console import RunConsole
    from syncse_ray.errors import SyncseError
    run = Path(sys.argv[1])
    rc = RunConsole()
    with rc.run(run):
        print("noise between stages")
        with rc.stage("synth") as d:
            print("python stdout noise"); print("python stderr noise", file=sys.stderr)
            os.write(1, b"fd-level noise\\n")
            subprocess.run(["sh", "-c", "echo child noise; echo child err >&2"])
            for i in range(3):
                d.update(i + 1, 3, kept=i)
                time.sleep(0.7)
        with rc.stage("round_2/train") as d:
            d.status = "skipped"
        for error in (SyncseError("bad input, said in one line"), RuntimeError("boom")):
            try:
                with rc.stage("eval"):
                    print("the line before it broke")
                    raise error
            except (SyncseError, RuntimeError):
                pass
    rc.summary([["synth", "ran", "2 s", "3 triplets kept"]], run / "report.md")
    print("after the run")
""")


def _run(tmp_path: Path, **env: str) -> list[str]:
    script = tmp_path / "snippet.py"
    script.write_text(SNIPPET)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "run")], capture_output=True, text=True,
                          timeout=60, check=True,
                          env={**os.environ, "SYNCSE_PROGRESS_INTERVAL": "1", "COLUMNS": "100", **env})
    return (proc.stdout + proc.stderr).splitlines()


def test_quiet_by_default_with_one_display_per_stage_and_logs_per_stage(tmp_path):
    lines = _run(tmp_path)
    text = "\n".join(lines)
    assert "noise" not in text and "child" not in text  # nothing of what the stage printed ...
    logs = tmp_path / "run" / "logs"
    synth = (logs / "synth.log").read_text()
    for noise in ("python stdout noise", "python stderr noise", "fd-level noise", "child noise", "child err"):
        assert noise in synth  # ... which is all in its log, children's output included
    assert "noise between stages" in (logs / "pipeline.log").read_text()
    assert (logs / "round_2_train.log").is_file()
    assert any(line.startswith("synth: ") and "/3" in line for line in lines)  # a progress line (no terminal)
    assert any(line.startswith("synth: done in") and "kept 2" in line for line in lines)
    assert any(line.startswith("round_2/train: skipped") for line in lines)
    # bad input: the error says it; anything else: the log's last lines and its path
    assert sum(line.startswith("eval: failed") for line in lines) == 2
    assert sum(" lines of " in line for line in lines) == 1
    assert f"last 2 lines of {logs / 'eval.log'}:" in text and "  the line before it broke" in lines
    assert "3 triplets kept" in text and f"logs {logs}" in text
    assert lines[-1] == "after the run"  # the terminal is back once the run ends
    assert len(lines) < 30


def test_verbose_leaves_every_output_on_the_terminal(tmp_path):
    text = "\n".join(_run(tmp_path, SYNCSE_VERBOSE="1"))
    assert "python stdout noise" in text and "child err" in text and "synth: done in" in text
    assert not (tmp_path / "run" / "logs" / "synth.log").exists()
