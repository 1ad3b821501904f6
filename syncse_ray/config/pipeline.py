"""The end-to-end pipeline: which stages run, and what it ends with."""

from typing import Literal

from pydantic import Field

from syncse_ray.config.base import Section


class PipelineConfig(Section):
    stages: list[Literal["synth", "train", "eval"]] = Field(
        default_factory=lambda: ["synth", "train", "eval"],
        description="stages to run in order (leave out synth to train on an existing file: train.data)")
    build_index: bool = Field(False, description="index serve.corpus with the trained model into <run_dir>/index")
    serve: bool = Field(False, description="end by serving the trained model (blocks until interrupted)")
