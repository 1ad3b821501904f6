"""Synthesis stage: LLM-written positives and hard negatives (SynCSE-partial / SynCSE-scratch).

    from syncse_ray.synth import run_synth
    result = run_synth(cfg)          # SynthResult: counts, drop reasons, paths, manifest, stats
"""

from syncse_ray.synth.pipeline import SynthError, SynthResult, run_synth

__all__ = ["SynthError", "SynthResult", "run_synth"]
