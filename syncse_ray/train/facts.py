"""What a model card says about a training run, gathered once at the end of training and kept in the exported
folder (`syncse_train.json`, key `card`): the config, the derived step counts, the training data (its columns, a
sample, and what the synthesis manifest says when the data is a synth stage's output), the metrics log.
`syncse_ray.train.card` renders them. No Ray.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syncse_ray import __version__
from syncse_ray.synth.layout import Layout

if TYPE_CHECKING:
    import pyarrow as pa

    from syncse_ray.config import Config

TRAIN_META = "syncse_train.json"
SAMPLE_ROWS = 100  # rows kept for the card's column statistics and samples (sentence-transformers: the first 100)


def base_model_hub_id(reference: str) -> str | None:
    """The hub id of a base model reference, for the card's `base_model`: a bundled model's origin, a hub name
    as given; None for a local folder (the hub's `base_model` must be a hub id)."""
    from syncse_ray.models.references import BUNDLED, BUNDLED_PREFIX

    if reference.startswith(BUNDLED_PREFIX):
        bundled = BUNDLED.get(reference[len(BUNDLED_PREFIX):])
        return bundled.hub_id if bundled else None
    if Path(reference).expanduser().exists() or reference.startswith((".", "/", "~")) or reference.count("/") > 1:
        return None
    return reference


def synthesis_facts(data_path: Path) -> dict[str, Any] | None:
    """What the synthesis manifest says about the training data, when `data_path` is a synth stage's `data/`
    folder (its parent holds `manifest.json`); None otherwise."""
    path = Path(data_path)
    folder = Layout(path.parent if path.is_dir() else path.parent.parent)
    manifest_file = folder.manifest
    if path.name != "data" or not manifest_file.is_file():
        return None
    try:
        manifest = json.loads(manifest_file.read_text())
    except json.JSONDecodeError:
        return None
    synth = (manifest.get("config") or {}).get("synth") or {}
    judge = synth.get("judge") or {}
    annotate = (manifest.get("phases") or {}).get("annotate") or {}
    return {
        "folder": str(manifest_file.parent), "mode": manifest.get("mode"), "generator": manifest.get("model"),
        "input": synth.get("input"), "candidates": synth.get("candidates"),
        "judge": {k: judge.get(k) for k in ("method", "model", "margin", "min_positive", "max_positive",
                                            "min_negative") if k in judge},
        "requested": manifest.get("requested"), "kept": annotate.get("kept"), "dropped": annotate.get("dropped"),
        "drop_reasons": annotate.get("drop_reasons") or {},
        "dataset_card": folder.card.is_file() or None,
    }


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted keys."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def training_facts(cfg: Config, data_path: Path, table: pa.Table, plan: dict[str, int],
                   history: list[dict[str, Any]], seed: int | None = None) -> dict[str, Any]:
    """Everything the model card says about a training run (JSON-able): `table` the training rows as read,
    `plan` steps per epoch / total steps, `history` the metrics log."""
    from syncse_ray.config import TrainConfig, dump_config
    from syncse_ray.config.base import output_settings

    train_cfg = cfg.train
    train = output_settings(train_cfg)  # what determines the model (no resource fields: workers' CPUs, restarts, ...)
    defaults = output_settings(TrainConfig())
    train["data"] = str(Path(data_path).resolve())
    train["seed"] = seed if seed is not None else (train_cfg.seed if train_cfg.seed is not None else cfg.seed)
    derived = {"global_batch_size": (train_cfg.num_workers * train_cfg.batch_size
                                     * train_cfg.gradient_accumulation_steps),
               "steps_per_epoch": plan["steps_per_epoch"], "total_steps": plan["total_steps"],
               "warmup_steps": round(train_cfg.warmup_ratio * plan["total_steps"])}
    flat, flat_defaults = flatten(train), flatten(defaults)
    return {
        "syncse_ray_version": __version__,
        "base_model": train_cfg.model, "base_model_hub_id": base_model_hub_id(train_cfg.model),
        "train": train, "derived": derived,
        "non_default": {k: v for k, v in flat.items() if flat_defaults.get(k, object()) != v},
        "data": {"path": train["data"], "rows": table.num_rows, "columns": table.column_names,
                 "sample": table.slice(0, SAMPLE_ROWS).to_pylist(), "synthesis": synthesis_facts(data_path)},
        "history": history,
        "run_dir": str(Path(cfg.run_dir).resolve()),
        "config_yaml": dump_config(cfg),
    }


def folder_facts(facts: dict[str, Any], metrics: dict[str, Any], which: str, best_step: int) -> dict[str, Any]:
    """`facts` for one exported folder: `which` best or final, `metrics` its checkpoint's dev scores."""
    return {**facts, "folder": which, "checkpoint_metrics": metrics, "best_step": best_step}


def read_facts(model_dir: Path) -> dict[str, Any] | None:
    path = Path(model_dir) / TRAIN_META
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("card")
