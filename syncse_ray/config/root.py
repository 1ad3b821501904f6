"""The whole config: run-wide settings plus one section per stage."""

import os
from pathlib import Path

from pydantic import Field, model_validator

from syncse_ray.config.base import Section
from syncse_ray.config.eval import EvalConfig
from syncse_ray.config.pipeline import PipelineConfig
from syncse_ray.config.ray import RayConfig
from syncse_ray.config.serve import ServeConfig
from syncse_ray.config.synth import SynthConfig
from syncse_ray.config.train import TrainConfig
from syncse_ray.data.datadir import DATA_DIR_ENV, default_data_dir  # noqa: F401 (re-exported)

CACHE_DIR_ENV = "SYNCSE_CACHE_DIR"


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "syncse-ray")


class Config(Section):
    name: str = "syncse"
    run_dir: Path = Field(Path("runs/syncse"), description="every stage writes below this folder")
    # Benchmark and seed data (senteval/, seeds/); env SYNCSE_DATA_DIR, else ~/.cache/syncse-ray/data, which
    # `syncse data fetch` fills.
    data_dir: Path = Field(default_factory=default_data_dir)
    # Converted bundled models live here; env SYNCSE_CACHE_DIR.
    cache_dir: Path = Field(default_factory=default_cache_dir)
    seed: int = 0
    ray: RayConfig = RayConfig()
    synth: SynthConfig = SynthConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    serve: ServeConfig = ServeConfig()
    pipeline: PipelineConfig = PipelineConfig()

    @model_validator(mode="after")
    def _rounds_fit(self):
        if self.pipeline.rounds == 1:
            return self
        for section in ("train", "eval"):
            if getattr(self, section).output_dir is not None:
                raise ValueError(f"{section}.output_dir cannot be set with pipeline.rounds > 1: each round writes "
                                 f"into <run_dir>/round_<r>/{section}")
        if "synth" not in self.pipeline.stages or "train" not in self.pipeline.stages:
            raise ValueError("pipeline.rounds > 1 needs synth and train in pipeline.stages: later rounds judge "
                             "round 1's synthesized candidates and train on them")
        if self.train.data is not None:
            raise ValueError("train.data cannot be set with pipeline.rounds > 1: each round trains on its own "
                             "selection")
        if "embedding" not in self.synth.judge.method:
            raise ValueError("pipeline.rounds > 1 needs an embedding judge in round 1 (synth.judge.method "
                             "embedding or embedding+llm): its scores carry the thresholds over to the trained "
                             "encoder")
        return self

    def stage_dir(self, stage: str) -> Path:
        """Where a stage writes unless its section names an output_dir."""
        section = getattr(self, stage)
        return Path(section.output_dir) if getattr(section, "output_dir", None) else self.run_dir / stage
