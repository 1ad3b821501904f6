"""The end-to-end pipeline: which stages run, how many rounds, and what it ends with."""

from typing import Literal

from pydantic import Field

from syncse_ray.config.base import Section, resource


class RoundConfig(Section):
    """Rounds 2..N (`pipeline.rounds`): the encoder trained in round r-1 judges round 1's candidates again and
    mines hard negatives among them; round r trains on what it selects. See docs/rounds.md."""

    judge: Literal["trained", "synth"] = Field(
        "trained", description="trained: round r-1's encoder re-scores every candidate, with synth.judge's "
                               "thresholds carried over by quantile; synth: keep round 1's scores and selection")
    mine: Literal["off", "replace"] = Field(
        "replace", description="replace: a row whose LLM negatives all fail gets the hardest neighbour (top_k) "
                               "inside the judge's margins below its positive (TopK-PercPos)")
    top_k: int = Field(10, ge=1, description="neighbours searched per anchor when mining")
    init: Literal["base", "previous"] = Field(
        "previous", description="previous: round r continues from round r-1's model; base: it trains train.model "
                                "again (docs/rounds.md: continuing scored higher)")
    min_delta: float | None = Field(
        0.0, description="stop when a round's dev score does not beat the best earlier round's by more than this "
                         "(None: run every round)")
    batch_size: int = resource(128, ge=1, description="encoding batch size")
    num_actors: int = resource(1, ge=1, description="encoding actors (Ray Data actor pool)")
    num_gpus_per_actor: float = resource(0.0, ge=0.0)
    num_cpus_per_actor: float = resource(1.0, ge=0.0)


class PipelineConfig(Section):
    stages: list[Literal["synth", "train", "eval"]] = Field(
        default_factory=lambda: ["synth", "train", "eval"],
        description="stages to run in order (leave out synth to train on an existing file: train.data)")
    rounds: int = Field(1, ge=1, description="synth -> train -> eval once (1), or rounds where the trained encoder "
                                             "judges and mines the next round's data (<run_dir>/round_<r>/)")
    next_round: RoundConfig = RoundConfig()
    build_index: bool = Field(False, description="index serve.corpus with the trained model into <run_dir>/index")
    serve: bool = Field(False, description="end by serving the trained model (blocks until interrupted)")
