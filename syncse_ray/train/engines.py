"""The two data-parallel backends behind one small interface: DeepSpeed (ZeRO 0–3) and plain DDP.

Both use AdamW (torch's, so nothing is JIT-compiled) and a linear schedule: the learning rate rises linearly
from 0 to `lr` over `warmup_steps` optimizer steps, then falls linearly to 0 at `total_steps`:

    lr(s) = lr · s / warmup                          for s < warmup
    lr(s) = lr · (total − s) / (total − warmup)      afterwards

A *micro-batch* is one forward/backward of `batch_size` rows per worker; an optimizer *step* comes every
`gradient_accumulation_steps` micro-batches (gradients averaged over them and over workers, then clipped to
global norm `gradient_clipping` when > 0).
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.optim.lr_scheduler import LambdaLR


@dataclass
class OptimSettings:
    lr: float
    weight_decay: float
    warmup_steps: int
    total_steps: int
    gradient_accumulation_steps: int
    gradient_clipping: float
    precision: str  # fp32, bf16, fp16
    micro_batch_size: int
    zero_stage: int = 2
    bucket_size: int | None = None  # DeepSpeed reduce/allgather bucket elements; None: DeepSpeed's 5e8


def linear_schedule(warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def adamw(model: torch.nn.Module, s: OptimSettings) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases and LayerNorm weights (the transformers Trainer convention)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 else decay).append(param)
    groups = [{"params": decay, "weight_decay": s.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=s.lr, betas=(0.9, 0.999), eps=1e-8)


class DeepSpeedEngine:
    """deepspeed.initialize around the model; DeepSpeed does accumulation, clipping, precision and ZeRO."""

    def __init__(self, model: torch.nn.Module, s: OptimSettings):
        import deepspeed

        config = {
            "train_micro_batch_size_per_gpu": s.micro_batch_size,
            "gradient_accumulation_steps": s.gradient_accumulation_steps,
            "gradient_clipping": s.gradient_clipping,
            "zero_optimization": {"stage": s.zero_stage, **({} if s.bucket_size is None else {
                "reduce_bucket_size": s.bucket_size, "allgather_bucket_size": s.bucket_size})},
            "bf16": {"enabled": s.precision == "bf16"},
            "fp16": {"enabled": s.precision == "fp16"},
            "steps_per_print": 10**9,
            "wall_clock_breakdown": False,
        }
        self.engine, _, _, _ = deepspeed.initialize(
            model=model, optimizer=adamw(model, s), config=config,
            lr_scheduler=lambda opt: LambdaLR(opt, linear_schedule(s.warmup_steps, s.total_steps)),
        )
        self.zero_stage = s.zero_stage

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
    """torch DistributedDataParallel (via ray.train.torch.prepare_model), AdamW, autocast for bf16/fp16."""

    def __init__(self, model: torch.nn.Module, s: OptimSettings):
        import ray.train.torch

        self.ddp = ray.train.torch.prepare_model(model)
        self.optimizer = adamw(self.module, s)
        self.scheduler = LambdaLR(self.optimizer, linear_schedule(s.warmup_steps, s.total_steps))
        self.s = s
        self.micro = 0
        device = next(self.module.parameters()).device
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(s.precision)
        self.autocast = (torch.autocast(device.type, dtype=dtype) if dtype else nullcontext())
        self.scaler = torch.amp.GradScaler(device.type, enabled=s.precision == "fp16")

    @property
    def module(self) -> torch.nn.Module:
        return getattr(self.ddp, "module", self.ddp)

    def __call__(self, **batch):
        with self.autocast:
            return self.ddp(**batch)

    def backward_and_step(self, loss: torch.Tensor) -> bool:
        self.scaler.scale(loss / self.s.gradient_accumulation_steps).backward()
        self.micro += 1
        if self.micro % self.s.gradient_accumulation_steps:
            return False
        if self.s.gradient_clipping > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.s.gradient_clipping)
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


def build_engine(backend: str, model: torch.nn.Module, s: OptimSettings):
    return DeepSpeedEngine(model, s) if backend == "deepspeed" else DDPEngine(model, s)
