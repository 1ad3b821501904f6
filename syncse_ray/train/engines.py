"""The two data-parallel backends behind one small interface: DeepSpeed (ZeRO 0–3) and plain DDP.

Both use AdamW (torch's, so nothing is JIT-compiled; nor is DeepSpeed's CPU all-reduce op, below) and
transformers' linear schedule (`get_linear_schedule_with_warmup`): the learning rate rises linearly from 0 to `lr`
over `warmup_steps` optimizer steps, then falls linearly to 0 at `total_steps`:

    lr(s) = lr · s / warmup                          for s < warmup
    lr(s) = lr · (total − s) / (total − warmup)      afterwards

A *micro-batch* is one forward/backward of `batch_size` rows per worker; an optimizer *step* comes every
`gradient_accumulation_steps` micro-batches (gradients averaged over them and over workers, then clipped to
global norm `max_grad_norm` when > 0). With GradCache (`mini_batch_size`) each of the batch's mini-batches is one
backward pass of the engine (`TrainConfig.micro_steps` per step; see grad_cache.py). Settings are the
`TrainConfig` as configured.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path

import torch

from syncse_ray.config import TrainConfig

SHM_COMM_OP = "deepspeed_shm_comm"  # deepspeed.ops.op_builder.cpu.ShareMemCommBuilder.NAME


def linear_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int):
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(optimizer, warmup_steps, total_steps)


def adamw(model: torch.nn.Module, train: TrainConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases and LayerNorm weights (the transformers Trainer convention)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 else decay).append(param)
    groups = [{"params": decay, "weight_decay": train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=train.lr, betas=(0.9, 0.999), eps=1e-8)


class DeepSpeedEngine:
    """deepspeed.initialize around the model; DeepSpeed does accumulation, clipping, precision and ZeRO."""

    def __init__(self, model: torch.nn.Module, train: TrainConfig, warmup_steps: int, total_steps: int,
                 bucket_size: int | None):
        import deepspeed

        if not train.use_gpu:
            # DeepSpeed's CPU backend JIT-compiles its shared-memory all-reduce op (`deepspeed_shm_comm`) when it
            # sets up communication: 30-40 s of g++ on 2 cores, in every run whose build flags differ from the
            # cached build's, and a compiler every user must have. Only `inference_all_reduce` (tensor-parallel
            # inference) uses the op; training's all-reduces are torch.distributed's (gloo) either way.
            deepspeed.ops.__compatible_ops__[SHM_COMM_OP] = False
        self.zero_stage = train.deepspeed.zero_stage
        config = {
            "train_micro_batch_size_per_gpu": train.mini_batch_size or train.batch_size,
            "gradient_accumulation_steps": train.micro_steps,
            "gradient_clipping": train.max_grad_norm,
            "zero_optimization": {"stage": self.zero_stage, **({} if bucket_size is None else {
                "reduce_bucket_size": bucket_size, "allgather_bucket_size": bucket_size})},
            "bf16": {"enabled": train.precision == "bf16"},
            "fp16": {"enabled": train.precision == "fp16"},
            "steps_per_print": 10**9,
            "wall_clock_breakdown": False,
        }
        self.engine, _, _, _ = deepspeed.initialize(
            model=model, optimizer=adamw(model, train), config=config,
            lr_scheduler=lambda opt: linear_schedule(opt, warmup_steps, total_steps),
        )

    @property
    def module(self) -> torch.nn.Module:
        return self.engine.module

    def __call__(self, **batch):
        return self.engine(**batch)

    def backward_and_step(self, loss: torch.Tensor) -> bool:
        """Backward one micro-batch; returns True when this completed an optimizer step."""
        boundary = self.engine.is_gradient_accumulation_boundary()
        self.engine.backward(loss)
        self.engine.step()
        return boundary

    def lr(self) -> float:
        return float(self.engine.get_lr()[0])

    def save(self, directory: Path) -> None:
        """Every worker writes its part (ZeRO partitions optimizer state); call on all workers."""
        self.engine.save_checkpoint(str(directory), tag="deepspeed", save_latest=False)

    def load(self, directory: Path) -> None:
        path, _ = self.engine.load_checkpoint(str(directory), tag="deepspeed")
        if path is None:
            raise RuntimeError(f"no DeepSpeed checkpoint in {directory}")

    def full_state_dict(self) -> dict[str, torch.Tensor] | None:
        """The whole model's weights on rank 0 (None elsewhere); call on all workers (ZeRO-3 gathers)."""
        if self.zero_stage == 3:
            return self.engine._zero3_consolidated_16bit_state_dict()
        return self.module.state_dict() if torch.distributed.get_rank() == 0 else None


class DDPEngine:
    """torch DistributedDataParallel (one process a device), AdamW, autocast for bf16/fp16."""

    def __init__(self, model: torch.nn.Module, train: TrainConfig, warmup_steps: int, total_steps: int,
                 bucket_size: int | None = None):
        from torch.nn.parallel import DistributedDataParallel

        device = next(model.parameters()).device
        distributed = torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1
        self.ddp = (DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
                    if distributed else model)
        self.optimizer = adamw(self.module, train)
        self.scheduler = linear_schedule(self.optimizer, warmup_steps, total_steps)
        self.accumulation, self.max_grad_norm = train.micro_steps, train.max_grad_norm
        self.micro = 0
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(train.precision)
        self.autocast = (torch.autocast(device.type, dtype=dtype) if dtype else nullcontext())
        self.scaler = torch.amp.GradScaler(device.type, enabled=train.precision == "fp16")

    @property
    def module(self) -> torch.nn.Module:
        return getattr(self.ddp, "module", self.ddp)

    def __call__(self, **batch):
        with self.autocast:
            return self.ddp(**batch)

    def backward_and_step(self, loss: torch.Tensor) -> bool:
        self.scaler.scale(loss / self.accumulation).backward()
        self.micro += 1
        if self.micro % self.accumulation:
            return False
        if self.max_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return True

    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def save(self, directory: Path) -> None:
        if torch.distributed.get_rank() == 0:
            torch.save({"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                        "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict()},
                       os.path.join(directory, "ddp_state.pt"))

    def load(self, directory: Path) -> None:
        state = torch.load(os.path.join(directory, "ddp_state.pt"), map_location="cpu", weights_only=True)
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])

    def full_state_dict(self) -> dict[str, torch.Tensor] | None:
        return self.module.state_dict() if torch.distributed.get_rank() == 0 else None


def build_engine(model: torch.nn.Module, train: TrainConfig, *, warmup_steps: int, total_steps: int,
                 bucket_size: int | None = None):
    engine = DeepSpeedEngine if train.backend == "deepspeed" else DDPEngine
    return engine(model, train, warmup_steps, total_steps, bucket_size)
