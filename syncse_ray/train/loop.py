"""The per-worker training loop that Ray Train runs on every worker (`train_loop_per_worker`).

Read top to bottom: build the model and engine, restore the latest checkpoint if Ray hands one over, then for
each epoch stream this worker's shard of the Ray Dataset, skip the micro-batches the checkpoint already covers,
and train; every `eval_steps` optimizer steps score the dev sets and report a checkpoint. The data position is
the optimizer step s: epoch = s // steps_per_epoch and the first (s mod steps_per_epoch) · accumulation
micro-batches of that epoch are skipped, so a relaunch resumes with the same step count.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from syncse_ray.config import TrainConfig
from syncse_ray.hardware import (
    cpu_threads_per_worker,
    precision_here,
    slow_precision_warning,
    this_machine,
    usable_cores,
)

CHECKPOINT_STATE = "train_state.json"
CHECKPOINT_WEIGHTS = "encoder.pt"


@dataclass
class LoopSpec:
    """What one worker needs: the train section as configured, plus what the driver resolved (paths are local
    to every node)."""

    train: TrainConfig
    model_path: str
    seed: int
    warmup_steps: int
    total_steps: int
    steps_per_epoch: int
    dev: dict = field(default_factory=dict)
    fault_marker: str | None = None
    guide_path: str | None = None  # train.false_negatives.guide, resolved to a local folder
    progress_file: str | None = None  # rank 0 keeps the latest step, loss and dev score here (the driver's display)


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _all_mean(value: float) -> float:
    """The mean of a float over workers (NaN/inf anywhere makes it non-finite everywhere)."""
    if not dist.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return t.item() / dist.get_world_size()


def _run_precision(requested: str, device_type: str, state: dict | None, rank: int) -> str:
    """The precision this run trains in: `requested` resolved on this worker's device (syncse_ray.hardware), except
    that a resumed `auto` run keeps the precision its checkpoints were written in (a DeepSpeed checkpoint loads
    into an engine of the same precision; a run folder moved to a machine that resolves `auto` differently goes
    on as it started)."""
    resolved = precision_here(requested, device_type)
    pinned = (state or {}).get("precision")
    if requested == "auto" and pinned and pinned != resolved:
        if rank == 0:
            print(f"[train] precision auto: this run started in {pinned} and resumes in {pinned} (a new run on "
                  f"this machine would use {resolved})", flush=True)
        return pinned
    warning = slow_precision_warning(resolved, device=device_type, cpu_flags=this_machine().cpu_flags)
    if warning and rank == 0:
        print(f"[train] warning: {warning}", flush=True)
    return resolved


def train_loop_per_worker(config: dict) -> dict:
    spec = LoopSpec(**config)
    train = spec.train
    if not train.use_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # before DeepSpeed is imported
    import ray.train
    import ray.train.torch
    from transformers import AutoTokenizer, DataCollatorForLanguageModeling

    from syncse_ray.models.pooling import prepare_tokenizer
    from syncse_ray.train.data import tokenize_views, views
    from syncse_ray.train.dev import dev_scores
    from syncse_ray.train.engines import build_engine
    from syncse_ray.train.losses import JudgeScores, build_loss
    from syncse_ray.train.model import SimCSEModel

    rank, world = _rank(), ray.train.get_context().get_world_size()
    device = ray.train.torch.get_device()
    if device.type == "cpu":  # set in this thread: OpenMP's thread count is per calling thread
        torch.set_num_threads(cpu_threads_per_worker(
            train.cpu_threads_per_worker, cores=usable_cores(),
            workers_here=ray.train.get_context().get_local_world_size()))
    checkpoint = ray.train.get_checkpoint()
    state = None
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = json.loads((Path(directory) / CHECKPOINT_STATE).read_text())
    train = train.model_copy(update={"precision": _run_precision(train.precision, device.type, state, rank)})

    # Model: the same MLP initialisation on every worker, then per-worker randomness (dropout, masking).
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(spec.model_path), train.pooler)
    torch.manual_seed(spec.seed)
    model = SimCSEModel.from_pretrained(spec.model_path, train.pooler, mlm=train.mlm_weight > 0,
                                        dropout=train.dropout).to(device)
    model.train()
    torch.manual_seed(spec.seed + 1 + rank)
    # BERT masking for the auxiliary MLM loss: 15% of the non-special tokens; of those 80% [MASK], 10% random.
    masker = (DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, seed=spec.seed + 1 + rank)
              if train.mlm_weight > 0 else None)
    # CPU: DeepSpeed's 5e8-element gradient buckets alone hold 1-2 GB per worker (bf16, two buffers with
    # overlap); 5e7 keeps a 2-worker SmolLM2 run inside a laptop's memory.
    engine = build_engine(model, train, warmup_steps=spec.warmup_steps, total_steps=spec.total_steps,
                          bucket_size=None if train.use_gpu else 50_000_000)
    loss_fn = build_loss(train)
    cache = None
    if train.mini_batch_size:
        from syncse_ray.train.grad_cache import GradCache

        cache = GradCache(lambda inputs: engine(**inputs)[0], loss_fn)
    guide = None
    if spec.guide_path:
        from syncse_ray.models.encoders import load_encoder

        guide = load_encoder(spec.guide_path, pooler=train.false_negatives.guide_pooler, device=str(device))
    if rank == 0:
        print(f"[train] {world} worker(s), {torch.get_num_threads()} torch threads each, precision "
              f"{train.precision}, parameters {next(engine.module.parameters()).dtype}", flush=True)
        if train.dropout is not None:
            print(f"[train] dropout {train.dropout} on {len(model.dropout_applied)} setting(s)/sublayer(s): "
                  f"{', '.join(model.dropout_applied[:4])}{' …' if len(model.dropout_applied) > 4 else ''}",
                  flush=True)

    # Resume: the engine state and the step (= data position) from the latest checkpoint, if any.
    step, history = 0, []
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            engine.load(Path(directory))
        step, history = state["step"], state["history"]
        if rank == 0:
            print(f"[train] resumed from checkpoint at step {step}/{spec.total_steps}", flush=True)

    def save_and_report(metrics: dict) -> None:
        """Every worker writes its part of the checkpoint; Ray merges them into one folder in storage."""
        with tempfile.TemporaryDirectory() as tmp:
            engine.save(Path(tmp))
            weights = engine.full_state_dict()
            if rank == 0:
                torch.save(weights, Path(tmp) / CHECKPOINT_WEIGHTS)
                (Path(tmp) / CHECKPOINT_STATE).write_text(json.dumps({"step": step, "history": history,
                                                                      "precision": train.precision}))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp),
                             checkpoint_dir_name=f"checkpoint_step_{step:07d}")

    shown: dict = {}

    def show(record: dict) -> None:
        """The latest numbers for the driver's progress display (rank 0; a small file, replaced atomically)."""
        if rank != 0 or not spec.progress_file:
            return
        from syncse_ray.io import write_json_atomic

        shown.update(record, total_steps=spec.total_steps, precision=train.precision)
        write_json_atomic(Path(spec.progress_file), shown)

    def evaluate() -> dict:
        scores = dev_scores(engine.module, tokenizer, spec.dev, train.max_seq_length)
        record = {"step": step, **scores}
        history.append(record)
        if rank == 0:
            print(f"[train] step {step}/{spec.total_steps} dev " +
                  " ".join(f"{k}={v:.2f}" for k, v in scores.items()), flush=True)
        show(record)
        return record

    def tokenized(texts: list[list[str]]) -> dict[str, torch.Tensor]:
        return {k: v.to(device) for k, v in tokenize_views(texts, tokenizer, train.max_seq_length).items()}

    start_step = step
    shard = ray.train.get_dataset_shard("train")
    accum = train.gradient_accumulation_steps
    # samples/s counts wall time between micro-batches (data, tokenization, compute), not dev evaluation.
    window_loss, window_steps, window_time = 0.0, 0, 0.0
    step_loss = 0.0  # this optimizer step's loss so far (the progress display shows every step)
    last_tick = time.perf_counter()
    while step < spec.total_steps:
        epoch, steps_done_in_epoch = divmod(step, spec.steps_per_epoch)
        micro_per_epoch = spec.steps_per_epoch * accum
        batches = shard.iter_batches(batch_size=train.batch_size, drop_last=True, batch_format="numpy",
                                     local_shuffle_buffer_size=max(train.batch_size * 4, 1024),
                                     local_shuffle_seed=spec.seed + epoch)
        for micro, rows in enumerate(batches):
            if micro < steps_done_in_epoch * accum:
                last_tick = time.perf_counter()
                continue  # covered by the checkpoint we resumed from
            if micro >= micro_per_epoch or step >= spec.total_steps:
                break
            texts = views(rows, train.objective)
            # what judges which negatives are false (no gradient): the guide's vectors for the same views, or
            # the synthesis judge's scores of each row's own pair
            reference = None
            if guide is not None:
                reference = tuple(torch.from_numpy(guide.encode(view, show_progress=False)).to(device)
                                  for view in texts)
            elif train.false_negatives.reference == "judge_scores":
                reference = JudgeScores(*(torch.as_tensor(rows[c], dtype=torch.float32, device=device)
                                          for c in ("pos_score", "neg_score")))
            if cache is not None:  # GradCache: embed mini-batch by mini-batch, loss of the whole batch
                m = train.mini_batch_size
                loss = cache.loss([tokenized([view[i:i + m] for view in texts])
                                   for i in range(0, len(texts[0]), m)], len(texts), reference)
            else:
                inputs = tokenized(texts)
                if masker is not None:
                    mlm = masker([{"input_ids": ids} for ids in inputs["input_ids"].tolist()])
                    inputs.update(mlm_input_ids=mlm["input_ids"].to(device), mlm_labels=mlm["labels"].to(device))
                vectors, mlm_loss = engine(**inputs)
                k_views = vectors.view(-1, len(rows["sent0"]), vectors.shape[-1])  # [k, N, d]
                loss = loss_fn(*k_views, reference=reference)
                if mlm_loss is not None:
                    loss = loss + train.mlm_weight * mlm_loss
            mean_loss = _all_mean(loss.item())
            if not math.isfinite(mean_loss):
                # Stop on every worker together, without a checkpoint: the last good one stays the latest.
                message = (f"non-finite loss ({mean_loss}) at step {step + 1} (epoch {epoch}); stopped. "
                           f"Lower train.lr, raise train.temperature, or use fp32/bf16 instead of fp16.")
                if rank == 0:
                    print(f"[train] {message}", flush=True)
                return {"stopped": message, "step": step, "start_step": start_step, "precision": train.precision}
            stepped = cache.replay(engine.backward_and_step) if cache is not None else engine.backward_and_step(loss)
            window_loss += mean_loss / accum
            step_loss += mean_loss / accum
            now = time.perf_counter()
            window_time, last_tick = window_time + now - last_tick, now
            if not stepped:
                continue
            step += 1
            window_steps += 1
            show({"step": step, "loss": step_loss})
            step_loss = 0.0

            if step % train.log_every == 0 or step == spec.total_steps:
                record = {"step": step, "epoch": round(step / spec.steps_per_epoch, 4),
                          "loss": window_loss / window_steps, "lr": engine.lr(),
                          "samples_per_s": window_steps * accum * train.batch_size * world / window_time}
                history.append(record)
                if rank == 0:
                    print(f"[train] step {step}/{spec.total_steps} loss {record['loss']:.4f} "
                          f"lr {record['lr']:.2e} {record['samples_per_s']:.1f} samples/s", flush=True)
                show(record)
                window_loss, window_steps, window_time = 0.0, 0, 0.0

            if step % train.eval_steps == 0 or step == spec.total_steps:
                save_and_report(evaluate())
                last_tick = time.perf_counter()

            if step == train.fault_at_step and rank == 0 and not Path(spec.fault_marker).exists():
                Path(spec.fault_marker).write_text(str(step))
                raise RuntimeError(f"injected fault at step {step} (train.fault_at_step)")
        if step < min((epoch + 1) * spec.steps_per_epoch, spec.total_steps):
            raise RuntimeError(f"the data shard of worker {rank} ended after step {step}, before the planned "
                               f"{spec.steps_per_epoch} steps of epoch {epoch}")
    return {"stopped": None, "step": step, "start_step": start_step, "precision": train.precision}

