"""The orchestrator: the run loop and its record (`run.py`), the rounds (`rounds.py`), the run report
(`report.py`) and what a person sees while it runs (`console.py`). Above the stages, below the command line.

    from syncse_ray.pipeline import run_pipeline
    result = run_pipeline(cfg)       # PipelineResult: per stage ran or skipped, wall time; the report
"""

from __future__ import annotations

__all__ = ["PipelineError", "PipelineResult", "run_pipeline"]


def __getattr__(name: str):
    # Lazy: `syncse_ray.pipeline.console` (imported by the CLI for every command) need not load the run loop.
    if name in __all__:
        from syncse_ray.pipeline import run

        return getattr(run, name)
    raise AttributeError(name)
