"""Synthesis stage: LLM-written positives and hard negatives (SynCSE-partial / SynCSE-scratch)."""
