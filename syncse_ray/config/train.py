"""Training: supervised (or unsupervised) SimCSE on Ray Train, DeepSpeed or DDP (see docs/train.md)."""

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from syncse_ray.config.base import PrecisionSetting, Section, resource
from syncse_ray.models.pooling import Pooler


class DeepSpeedConfig(Section):
    # The optimizer is torch.optim.AdamW handed to DeepSpeed as a client optimizer, so DeepSpeed never
    # JIT-compiles its fused Adam (~90 s on CPU).
    zero_stage: Literal[0, 1, 2, 3] = 2


class FalseNegativeConfig(Section):
    """Negatives that are really positives (an LLM "hard negative" that paraphrases, a near-duplicate in the
    batch), judged by a reference: a guide encoder that scores the batch at every step, or the synthesis judge's
    scores carried in the data (syncse_ray/train/losses.py)."""

    reference: Literal["guide", "judge_scores"] = Field(
        "guide", description="guide: the `guide` encoder's cosines for every (anchor, candidate) of the batch; "
                             "judge_scores: the data's pos_score / neg_score columns (the synthesis judge's "
                             "cosines of each row's own positive and hard negative), so only each anchor's own "
                             "hard negative can be masked or decayed, and no model runs")
    guide: str | None = Field(None, description="any encoder the project can load (bundled: name, folder, hub "
                                                "name); None: off")
    guide_pooler: str | None = None
    mask_threshold: float | None = Field(None, ge=-1.0, le=1.0,
                                         description="remove negatives whose guide cosine exceeds this "
                                                     "(MultiCSR: 0.95)")
    mask_ratio: float | None = Field(None, gt=0.0, description="remove negatives whose guide cosine exceeds the "
                                                               "positive's times this (GISTEmbed: 1.0)")
    decay_sigma: float | None = Field(None, gt=0.0, description="GCSE's Gaussian decay width, in logit units "
                                                                "(cos / temperature)")
    decay_scope: Literal["hard_negative", "all"] = "hard_negative"

    @property
    def enabled(self) -> bool:
        return self.mask_threshold is not None or self.mask_ratio is not None or self.decay_sigma is not None

    @model_validator(mode="after")
    def _guided(self):
        if self.reference == "judge_scores":
            if self.guide is not None:
                raise ValueError("reference judge_scores reads the data's pos_score/neg_score columns: unset guide")
            if not self.enabled:
                raise ValueError("reference judge_scores is set but nothing uses it: set mask_threshold, "
                                 "mask_ratio or decay_sigma")
            if self.decay_sigma is not None and self.decay_scope == "all":
                raise ValueError("decay_scope all needs a reference for every in-batch negative; judge_scores "
                                 "has one only for each row's own hard negative: use decay_scope hard_negative or "
                                 "a guide encoder")
            return self
        if self.enabled and self.guide is None:
            raise ValueError("masking or decaying false negatives needs a reference: set guide (an encoder) "
                             "or reference: judge_scores")
        if self.guide is not None and not self.enabled:
            raise ValueError(f"guide {self.guide!r} is set but nothing uses it: set mask_threshold, mask_ratio "
                             "or decay_sigma")
        return self


class TrainConfig(Section):
    data: Path | None = Field(None, description="triplets (sent0,sent1,hard_neg), pairs or sentences; "
                                                 "default: <run_dir>/synth/data")
    model: str = "bundled:all-minilm-l6-v2"
    objective: Literal["supervised", "unsupervised"] = "supervised"
    pooler: Pooler = Field("cls", description="syncse_ray.models.pooling: cls, cls_before_pooler, avg, last, avg_top2, "
                                              "avg_first_last")
    dropout: float | None = Field(None, ge=0.0, lt=1.0, description=(
        "the encoder's dropout while training (unsupervised SimCSE's noise): None keeps the model's own (0.1 in "
        "BERT-style models, 0 in LLaMA-style decoders such as SmolLM2); p sets every dropout the config has, and "
        "on decoders without hidden dropout puts p on each sublayer's output (docs/train.md)"))
    temperature: float = Field(0.05, gt=0.0)
    hard_negative_weight: float = Field(0.0, description="log weight on each anchor's own hard negative")
    mlm_weight: float = Field(0.0, ge=0.0, description="auxiliary MLM loss weight (official SynCSE script: 0.1)")
    false_negatives: FalseNegativeConfig = FalseNegativeConfig()
    matryoshka_dims: list[int] | None = Field(None, description="train every prefix of these sizes too (e.g. "
                                                                "[768, 256, 64]: the full size first)")
    matryoshka_weights: list[float] | None = Field(None, description="one per matryoshka_dims (default: all 1)")
    max_seq_length: int = Field(32, gt=0)
    batch_size: int = Field(64, gt=0, description="per worker, per micro-batch")
    gradient_accumulation_steps: int = Field(1, ge=1)
    mini_batch_size: int | None = Field(None, ge=1, description="GradCache: encode the batch in mini-batches of "
                                                                "this size (memory flat in batch_size; the same "
                                                                "gradient); None: the whole batch at once")
    epochs: float = Field(1.0, gt=0.0)
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; overrides epochs")
    lr: float = Field(5e-5, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    warmup_ratio: float = Field(0.0, ge=0.0, le=1.0)
    max_grad_norm: float = Field(1.0, ge=0.0, description="clip the global gradient norm; 0: off")
    precision: PrecisionSetting = Field("auto", description="auto: bf16 on a GPU with bf16 or a CPU with AMX / "
                                                             "AVX512-BF16, fp16 on older GPUs, else fp32")
    backend: Literal["deepspeed", "ddp"] = "deepspeed"
    deepspeed: DeepSpeedConfig = DeepSpeedConfig()
    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = resource(1.0, gt=0.0)
    cpu_threads_per_worker: int | None = resource(None, ge=1, description=(
        "torch threads of each worker training on CPU; None: the cores of its node shared among the run's workers "
        "there (Ray alone would give each as many threads as CPUs it reserves: one, by default)"))
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

    @property
    def micro_steps(self) -> int:
        """Backward passes per optimizer step: accumulation, or GradCache's mini-batches."""
        return self.gradient_accumulation_steps * (self.batch_size // (self.mini_batch_size or self.batch_size))

    @model_validator(mode="after")
    def _compatible(self):
        if self.mini_batch_size is not None:
            if self.batch_size % self.mini_batch_size:
                raise ValueError(f"batch_size {self.batch_size} must be a multiple of mini_batch_size "
                                 f"{self.mini_batch_size}")
            if self.gradient_accumulation_steps != 1:
                raise ValueError("mini_batch_size (GradCache) replaces gradient accumulation: set "
                                 "gradient_accumulation_steps to 1 and raise batch_size instead")
            if self.mlm_weight > 0:
                raise ValueError("mini_batch_size (GradCache) does not support the auxiliary MLM loss (mlm_weight)")
        fn = self.false_negatives
        if fn.decay_sigma is not None and fn.decay_scope == "hard_negative" and self.objective == "unsupervised":
            raise ValueError("false_negatives.decay_scope hard_negative needs hard negatives, which unsupervised "
                             "training does not have: use decay_scope all")
        if fn.reference == "judge_scores" and self.objective == "unsupervised":
            raise ValueError("false_negatives.reference judge_scores scores each row's own hard negative, which "
                             "unsupervised training does not have: use a guide encoder")
        dims = self.matryoshka_dims
        if dims is not None:
            if not dims or any(d < 1 for d in dims) or len(set(dims)) != len(dims):
                raise ValueError(f"matryoshka_dims must be distinct positive sizes, got {dims}")
            if self.matryoshka_weights is not None and len(self.matryoshka_weights) != len(dims):
                raise ValueError(f"matryoshka_weights has {len(self.matryoshka_weights)} values for "
                                 f"{len(dims)} matryoshka_dims")
        elif self.matryoshka_weights is not None:
            raise ValueError("matryoshka_weights is set without matryoshka_dims")
        return self
