"""The driver: resolve the config, read the data into a Ray Dataset, run Ray Train, export, mark the stage done.

    result = run_train(cfg)

Output layout (cfg.stage_dir("train"), default <run_dir>/train):

    best/            sentence-transformers folder: the checkpoint with the best dev score (mean of STS-B dev
                     and SICK-R dev, 100 × Spearman of cosine)
    final/           sentence-transformers folder: the last step
                     (each with README.md, its model card: syncse_ray/train/card.py)
    metrics.jsonl    one JSON object a line: {"step", "epoch", "loss", "lr", "samples_per_s"} every log_every
                     steps and {"step", "stsb_dev", "sickr_dev", "dev_score"} at every evaluation
    ray_train/       Ray Train storage: checkpoint_step_NNNNNNN/ folders (DeepSpeed/DDP state, encoder.pt,
                     train_state.json) — a relaunch of the same config resumes from the latest one
    progress.json    the latest step, loss and dev score while it runs (the pipeline's progress display)
    run_config.json  the fingerprint of the settings this folder is being trained with
    stage.json       completion marker (syncse_ray.runtime.stage_marker), written last
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from syncse_ray.config import Config, TrainConfig
from syncse_ray.errors import SyncseError, SyncseRunError
from syncse_ray.runtime import stage_marker
from syncse_ray.train.data import TrainDataError, read_training_table
from syncse_ray.train.facts import folder_facts, training_facts
from syncse_ray.train.loop import CHECKPOINT_STATE, CHECKPOINT_WEIGHTS, LoopSpec, train_loop_per_worker

RAY_RUN_NAME = "ray_train"
FAULT_MARKER = "fault_injected"
PROGRESS_FILE = "progress.json"


def read_progress(out: Path) -> tuple[int, int, dict] | None:
    """(step, total steps, loss / samples/s / dev score) from a running training's progress file, if any."""
    try:
        p = json.loads((Path(out) / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return None
    info = {"loss": f"{p['loss']:.4f}" if "loss" in p else None,
            "samples/s": f"{p['samples_per_s']:.1f}" if "samples_per_s" in p else None,
            "dev": f"{p['dev_score']:.2f}" if "dev_score" in p else None}
    return p.get("step"), p.get("total_steps"), info


class TrainError(SyncseRunError, RuntimeError):
    """Training could not run or did not finish; the message says why and what is kept."""


class TrainInputError(SyncseError, ValueError):
    """A model or setting training cannot use (exit code 2); the message names the setting."""


@dataclass
class TrainResult:
    best_dir: Path
    final_dir: Path
    best_score: float
    best_step: int
    steps: int
    metrics_path: Path
    output_dir: Path
    final_scores: dict[str, float]
    resumed_from_step: int  # the step the last attempt started from (0: from scratch)
    precision: str | None = None  # what train.precision resolved to (auto: by the workers' device)
    skipped: bool = False  # already trained with this config: the recorded result, nothing ran


def training_settings(cfg: Config) -> TrainConfig:
    """What determines the trained model: the train section with its data path resolved and its seed filled in
    (its `resource` fields may change between relaunches). The training folder's fingerprint is taken of it."""
    train = cfg.train
    data_path = Path(train.data) if train.data is not None else cfg.stage_dir("synth") / "data"
    seed = cfg.seed if train.seed is None else train.seed
    return train.model_copy(update={"data": data_path.resolve(), "seed": seed})


def run_train(cfg: Config, progress: Callable[..., None] | None = None) -> TrainResult:
    """Train with cfg.train (see docs/train.md); returns where the models are and how they scored. A config
    that already finished in this folder returns its recorded result (`skipped`); an interrupted one resumes.
    `progress` is accepted for the shape every stage has: training's progress is the file its workers write
    (`read_progress(out)`), which a display polls."""
    tcfg = cfg.train
    out = cfg.stage_dir("train").resolve()
    settings = training_settings(cfg)
    seed, data_path = settings.seed, Path(settings.data)
    if stage_marker.is_done(out, settings):
        return _from_marker(stage_marker.read_marker(out))
    model_path = _check_model(tcfg.model, cfg.cache_dir)
    _check_matryoshka(tcfg, model_path)
    table = read_training_table(data_path, tcfg.objective, seed,
                                scores=tcfg.false_negatives.reference == "judge_scores")
    plan = _plan_steps(table.num_rows, tcfg)
    dev = _dev_sets(cfg.data_dir, tcfg.dev_max_pairs)
    stage_marker.claim(out, "training", settings, "run_config.json", "train.output_dir")
    guide_path = None
    if tcfg.false_negatives.guide is not None:
        guide_path = str(_check_model(tcfg.false_negatives.guide, cfg.cache_dir, "train.false_negatives.guide",
                                       "guide encoder"))
    spec = LoopSpec(train=tcfg, model_path=str(model_path), seed=seed, guide_path=guide_path,
                    progress_file=str(out / PROGRESS_FILE),
                    warmup_steps=round(tcfg.warmup_ratio * plan["total_steps"]), total_steps=plan["total_steps"],
                    steps_per_epoch=plan["steps_per_epoch"], dev=dev, fault_marker=str(out / FAULT_MARKER))
    result = _fit(spec, table, cfg.ray, out)

    stopped = (result.return_value or {}).get("stopped")
    if stopped:
        kept = (f"the last good checkpoint is kept: {result.checkpoint.path}" if result.checkpoint
                else "no checkpoint had been written yet")
        raise TrainError(f"training stopped: {stopped} {kept}")
    best_ckpt, best_metrics = max(result.best_checkpoints, key=lambda cm: cm[1]["dev_score"])
    final_metrics = result.metrics
    history = _read_history(result.checkpoint)
    precision = result.return_value["precision"]
    metrics_path = out / "metrics.jsonl"
    metrics_path.write_text("".join(json.dumps(r) + "\n" for r in history))
    facts = training_facts(cfg, data_path, table, plan, history, seed)
    facts["precision"] = precision
    best_dir = _export(best_ckpt, spec, out / "best", best_metrics,
                       folder_facts(facts, best_metrics, "best", best_metrics["step"]), precision)
    final_dir = _export(result.checkpoint, spec, out / "final", final_metrics,
                        folder_facts(facts, final_metrics, "final", best_metrics["step"]), precision)
    summary = TrainResult(best_dir=best_dir, final_dir=final_dir, best_score=best_metrics["dev_score"],
                          best_step=best_metrics["step"], steps=final_metrics["step"], metrics_path=metrics_path,
                          output_dir=out, final_scores={k: v for k, v in final_metrics.items() if k != "step"},
                          resumed_from_step=result.return_value["start_step"], precision=precision)
    recorded = {k: v for k, v in asdict(summary).items() if k != "skipped"}
    stage_marker.mark_done(out, "train", settings, result=json.loads(json.dumps(recorded, default=str)))
    return summary


def _from_marker(marker: dict) -> TrainResult:
    recorded = marker["result"]
    return TrainResult(**{k: (Path(v) if k.endswith(("_dir", "_path")) else v) for k, v in recorded.items()},
                       skipped=True)


def _check_model(reference: str, cache_dir: Path, setting: str = "train.model", what: str = "base model") -> Path:
    from transformers import AutoConfig, AutoTokenizer

    from syncse_ray.models.references import ModelError, resolve_model

    try:
        path = resolve_model(reference, cache_dir)
        AutoConfig.from_pretrained(str(path))
        AutoTokenizer.from_pretrained(str(path))
    except (ModelError, OSError, ValueError) as exc:
        raise TrainInputError(f"cannot load the {what} {setting}={reference!r}: {exc}") from None
    return path


def _check_matryoshka(tcfg: TrainConfig, model_path: Path) -> None:
    from transformers import AutoConfig

    hidden = AutoConfig.from_pretrained(str(model_path)).hidden_size
    if tcfg.matryoshka_dims and max(tcfg.matryoshka_dims) > hidden:
        raise TrainInputError(f"train.matryoshka_dims {tcfg.matryoshka_dims} exceed the model's {hidden} "
                              "dimensions")


def _plan_steps(rows: int, tcfg: TrainConfig) -> dict[str, int]:
    """Optimizer steps per epoch: each worker gets ⌊rows / W⌋ rows (Ray's equal split), makes ⌊· / B⌋ full
    micro-batches, and every `gradient_accumulation_steps` of them make a step."""
    per_step = tcfg.num_workers * tcfg.batch_size * tcfg.gradient_accumulation_steps
    steps_per_epoch = (rows // tcfg.num_workers // tcfg.batch_size) // tcfg.gradient_accumulation_steps
    if steps_per_epoch == 0:
        raise TrainDataError(f"{rows} training rows are too few for one optimizer step, which takes "
                             f"num_workers × batch_size × gradient_accumulation_steps = {per_step}")
    total = tcfg.max_steps or math.ceil(tcfg.epochs * steps_per_epoch)
    return {"steps_per_epoch": steps_per_epoch, "total_steps": total}


def _dev_sets(data_dir: Path, max_pairs: int | None) -> dict:
    from syncse_ray.data.datadir import MissingDataError
    from syncse_ray.data.senteval import load_sts_dev

    try:
        dev = load_sts_dev(data_dir, max_pairs)
    except MissingDataError:
        raise  # one line naming the file and `syncse data fetch` (exit 2)
    except FileNotFoundError as exc:
        raise TrainError(f"dev sets for model selection are missing (data_dir={data_dir}): {exc}") from None
    return {name: (s1, s2, [float(g) for g in gold]) for name, (s1, s2, gold) in dev.items()}


def _fit(spec: LoopSpec, table, ray_cfg, out: Path):
    """Run the loop on a Ray Train worker group; the shuffled rows go to the workers as a Ray Dataset
    (Ray Train splits it into equal shards, one per worker)."""
    import ray.data
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.train.v2.api.exceptions import TrainingFailedError

    from syncse_ray.runtime.ray_env import init_ray

    init_ray(ray_cfg)
    tcfg = spec.train
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=vars(spec),
        scaling_config=ScalingConfig(num_workers=tcfg.num_workers, use_gpu=tcfg.use_gpu,
                                     resources_per_worker={"CPU": tcfg.cpus_per_worker,
                                                           **({"GPU": 1} if tcfg.use_gpu else {})}),
        run_config=RunConfig(
            name=RAY_RUN_NAME, storage_path=str(out),
            checkpoint_config=CheckpointConfig(num_to_keep=tcfg.num_checkpoints_to_keep,
                                               checkpoint_score_attribute="dev_score",
                                               checkpoint_score_order="max"),
            failure_config=FailureConfig(max_failures=tcfg.max_failures)),
        torch_config=TorchConfig(backend="nccl" if tcfg.use_gpu else "gloo"),
        datasets={"train": ray.data.from_arrow(table)},
    )
    try:
        return trainer.fit()
    except TrainingFailedError as exc:
        raise TrainError(f"training failed (after {tcfg.max_failures} allowed restarts); relaunching the same "
                         f"config resumes from the latest checkpoint in {out / RAY_RUN_NAME}: {exc}") from exc


def _read_history(checkpoint) -> list[dict]:
    with checkpoint.as_directory() as directory:
        return json.loads((Path(directory) / CHECKPOINT_STATE).read_text())["history"]


def _export(checkpoint, spec: LoopSpec, out_dir: Path, metrics: dict, card: dict | None = None,
            precision: str = "fp32") -> Path:
    import torch
    from transformers import AutoTokenizer

    from syncse_ray.train.export import export_sentence_transformer

    t = spec.train
    model = load_checkpoint_model(checkpoint, spec.model_path, t.pooler, t.mlm_weight > 0)
    tokenizer = AutoTokenizer.from_pretrained(spec.model_path)
    meta = {"base_model": t.model, "checkpoint": str(checkpoint.path), "precision": precision, **metrics,
            **({"card": card} if card is not None else {})}
    # the weights as trained (bf16: lossless); an encoder loading them casts to its own precision
    dtype = torch.bfloat16 if precision == "bf16" else None
    with torch.no_grad():
        return export_sentence_transformer(model, tokenizer, out_dir, metadata=meta, dtype=dtype)


def load_checkpoint_model(checkpoint, model_path: str, pooler: str, mlm: bool):
    """The SimCSEModel (eval mode, float32) with the weights of a training checkpoint."""
    import torch

    from syncse_ray.train.model import SimCSEModel

    model = SimCSEModel.from_pretrained(model_path, pooler, mlm=mlm)
    with checkpoint.as_directory() as directory:
        state = torch.load(Path(directory) / CHECKPOINT_WEIGHTS, map_location="cpu", weights_only=True)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()
