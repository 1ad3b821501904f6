"""What the `jobs/*.py` entrypoints of `ray job submit` share: `--config PATH [--set key=value ...]`, joining the
cluster the job runs on, and handing the config to a stage.

    ray job submit --working-dir . -- python jobs/train.py --config configs/quickstart.yaml --set train.epochs=2
"""

from __future__ import annotations

import argparse
import sys

from syncse_ray.config import Config, load_config
from syncse_ray.errors import SyncseError
from syncse_ray.pipeline.stages import STAGES
from syncse_ray.runtime.interrupts import as_interrupted, resume_hint, stop_on_signals
from syncse_ray.runtime.ray_env import disconnect_ray, init_ray


def _run(stage: str, cfg: Config) -> None:
    """A stage alone (syncse_ray.pipeline.stages.STAGES: what the pipeline runs), or the whole pipeline."""
    if stage == "pipeline":
        from syncse_ray.pipeline.console import RunConsole
        from syncse_ray.pipeline.run import run_pipeline

        run_pipeline(cfg, console=RunConsole())
    else:
        STAGES[stage].run(cfg)


def job_main(stage: str, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"jobs/{stage}.py", description=f"syncse-ray {stage} job")
    parser.add_argument("--config", required=True, help="YAML config (see configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.lr=1e-5 (repeatable)")
    args = parser.parse_args(argv)
    run_dir = "the run folder"
    with stop_on_signals():  # `ray job stop` sends SIGTERM
        try:
            cfg = load_config(args.config, args.overrides)
            run_dir = cfg.run_dir
            init_ray(cfg.ray)
            _run(stage, cfg)
        except SyncseError as exc:  # expected: one line and its exit code; anything else keeps its traceback
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt as exc:
            stop = as_interrupted(exc)
            disconnect_ray()
            print(f"error: {resume_hint(run_dir, stop)}", file=sys.stderr)
            return stop.exit_code
    return 0
