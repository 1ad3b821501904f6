"""Where the train stage leaves its model and which training run made it: what the eval and index stages (and
`syncse pipeline` serving) read. Pure: no Ray."""

from __future__ import annotations

from pathlib import Path

from syncse_ray.config import Config
from syncse_ray.errors import SyncseError
from syncse_ray.runtime import stage_marker


class NoTrainedModel(SyncseError, RuntimeError):
    """A stage that needs the trained model before the train stage wrote one; the message says what to set."""


def trained_model_dir(cfg: Config) -> Path:
    """The model a run trained: the train stage's best checkpoint, exported."""
    return cfg.stage_dir("train") / "best"


def evaluated_model(cfg: Config) -> str:
    """eval.model, else the trained model (an error when training has not written it yet)."""
    if cfg.eval.model:
        return cfg.eval.model
    best = trained_model_dir(cfg)
    if not (best / "modules.json").is_file():
        raise NoTrainedModel(f"eval.model is not set and there is no trained model at {best}: run the train "
                             "stage first or set eval.model")
    return str(best.resolve())


def model_version(cfg: Config, model: str) -> str | None:
    """Which training run produced `model` (its fingerprint), so a retrained model is evaluated and indexed
    again; None for a model this run did not train."""
    if Path(model).resolve() == trained_model_dir(cfg).resolve():
        marker = stage_marker.read_marker(cfg.stage_dir("train"))
        return marker["fingerprint"] if marker else None
    return None
