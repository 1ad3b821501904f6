"""Evaluation: SentEval-protocol STS, transfer tasks and MTEB, for any encoder the project can load.

`syncse_ray.eval.sts` (readers and the STS metric) is pure and cheap to import; training uses it for model
selection on the dev sets.
"""
