"""Training: supervised (or unsupervised) SimCSE on Ray Train, DeepSpeed or DDP."""

from pathlib import Path
from typing import Literal

from pydantic import Field

from syncse_ray.config.base import Section


class DeepSpeedConfig(Section):
    zero_stage: Literal[0, 1, 2, 3] = 2
    gradient_clipping: float = Field(1.0, ge=0.0)
    # Use torch's Adam: DeepSpeed's fused CPU Adam is JIT-compiled on first use (~90 s).
    torch_adam: bool = True


class TrainConfig(Section):
    data: Path | None = Field(None, description="triplets (sent0,sent1,hard_neg), pairs or sentences; "
                                                 "default: the synth output")
    model: str = "bundled:all-minilm-l6-v2"
    objective: Literal["supervised", "unsupervised"] = "supervised"
    pooler: Literal["cls", "cls_before_pooler", "avg", "avg_first_last"] = "cls"
    temperature: float = Field(0.05, gt=0.0)
    hard_negative_weight: float = Field(0.0, description="log weight on each anchor's own hard negative")
    mlm_weight: float = Field(0.0, ge=0.0, description="auxiliary MLM loss weight (official SynCSE script: 0.1)")
    max_seq_length: int = Field(32, gt=0)
    batch_size: int = Field(64, gt=0, description="per worker, per step")
    gradient_accumulation_steps: int = Field(1, ge=1)
    epochs: float = Field(1.0, gt=0.0)
    max_steps: int | None = Field(None, ge=1)
    lr: float = Field(5e-5, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    warmup_ratio: float = Field(0.0, ge=0.0, le=1.0)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    backend: Literal["deepspeed", "ddp"] = "deepspeed"
    deepspeed: DeepSpeedConfig = DeepSpeedConfig()
    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0.0)
    eval_steps: int = Field(25, ge=1, description="dev evaluation (STS-B dev + SICK-R trial) every N steps")
    dev_max_pairs: int | None = Field(None, ge=1, description="subsample dev sets for speed (None: all)")
    num_checkpoints_to_keep: int = Field(2, ge=1)
    max_failures: int = Field(0, ge=-1)
    output_dir: Path | None = Field(None, description="default: <run_dir>/train")
    seed: int | None = Field(None, description="default: the top-level seed")
