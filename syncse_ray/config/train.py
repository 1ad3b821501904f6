"""Training: supervised (or unsupervised) SimCSE on Ray Train, DeepSpeed or DDP (see docs/train.md)."""

from pathlib import Path
from typing import Literal

from pydantic import Field

from syncse_ray.config.base import Section, resource
from syncse_ray.pooling import Pooler


class DeepSpeedConfig(Section):
    # The optimizer is torch.optim.AdamW handed to DeepSpeed as a client optimizer, so DeepSpeed never
    # JIT-compiles its fused Adam (~90 s on CPU).
    zero_stage: Literal[0, 1, 2, 3] = 2


class TrainConfig(Section):
    data: Path | None = Field(None, description="triplets (sent0,sent1,hard_neg), pairs or sentences; "
                                                 "default: <run_dir>/synth/data")
    model: str = "bundled:all-minilm-l6-v2"
    objective: Literal["supervised", "unsupervised"] = "supervised"
    pooler: Pooler = Field("cls", description="syncse_ray.pooling: cls, cls_before_pooler, avg, last, avg_top2, "
                                              "avg_first_last")
    temperature: float = Field(0.05, gt=0.0)
    hard_negative_weight: float = Field(0.0, description="log weight on each anchor's own hard negative")
    mlm_weight: float = Field(0.0, ge=0.0, description="auxiliary MLM loss weight (official SynCSE script: 0.1)")
    max_seq_length: int = Field(32, gt=0)
    batch_size: int = Field(64, gt=0, description="per worker, per micro-batch")
    gradient_accumulation_steps: int = Field(1, ge=1)
    epochs: float = Field(1.0, gt=0.0)
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; overrides epochs")
    lr: float = Field(5e-5, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    warmup_ratio: float = Field(0.0, ge=0.0, le=1.0)
    max_grad_norm: float = Field(1.0, ge=0.0, description="clip the global gradient norm; 0: off")
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    backend: Literal["deepspeed", "ddp"] = "deepspeed"
    deepspeed: DeepSpeedConfig = DeepSpeedConfig()
    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = resource(1.0, gt=0.0)
    eval_steps: int = Field(25, ge=1, description="dev evaluation (STS-B dev + SICK-R trial) and a checkpoint "
                                                  "every N optimizer steps, and at the end")
    dev_max_pairs: int | None = Field(None, ge=2, description="the first N pairs of each dev set (None: all)")
    log_every: int = Field(10, ge=1, description="loss / lr / samples/s to the metrics log every N steps")
    num_checkpoints_to_keep: int = Field(2, ge=1, description="best by dev score; the latest is always kept")
    max_failures: int = resource(0, ge=-1, description="worker-group restarts from the last checkpoint (-1: no limit)")
    output_dir: Path | None = resource(None, description="default: <run_dir>/train")
    seed: int | None = Field(None, description="default: the top-level seed")
    fault_at_step: int | None = resource(None, ge=1, description="testing recovery: rank 0 raises once after this "
                                                              "optimizer step (marker file in the output dir)")
