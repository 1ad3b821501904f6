"""Evaluation: SentEval-protocol STS, transfer tasks, MTEB."""

from pathlib import Path

from pydantic import Field

from syncse_ray.config.base import Section


class EvalConfig(Section):
    model: str | None = Field(None, description="default: the best model of the train stage")
    pooler: str | None = Field(None, description="for a plain transformers model: cls, avg, ...")
    tasks: list[str] = Field(default_factory=lambda: ["sts"], description="sts, transfer, mteb:<Task>, ...")
    batch_size: int = Field(128, gt=0)
    max_seq_length: int | None = Field(None, gt=0)
    output_dir: Path | None = Field(None, description="default: <run_dir>/eval")
