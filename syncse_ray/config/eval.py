"""Evaluation: SentEval-protocol STS, transfer tasks, MTEB (syncse_ray/eval, docs/eval.md)."""

from pathlib import Path
from typing import Literal

from pydantic import Field

from syncse_ray.config.base import PrecisionSetting, Section, resource
from syncse_ray.models.pooling import Pooler


class EvalConfig(Section):
    model: str | None = Field(None, description="default: the best model of the train stage")
    pooler: Pooler | None = Field(
        None, description="for a plain transformers model; None: the sentence-transformers pooling, else cls")
    tasks: list[str] = Field(default_factory=lambda: ["sts"],
                             description="sts, sts:<name>, sts-dev, transfer, transfer:<name>, rerank, "
                                         "rerank:<name>, mteb:<task|sts|reranking>")
    batch_size: int = Field(64, gt=0)
    precision: PrecisionSetting = Field("auto", description="the encoder's weights: auto (bf16 where the CPU or "
                                                             "GPU has it natively, else fp32 / fp16), fp32, bf16")
    max_seq_length: int | None = Field(None, gt=0)
    served_model: str | None = Field(None, description="model name sent to an http(s)://…/v1 endpoint")
    mteb_source: Literal["auto", "hub", "local"] = Field(
        "auto", description="mteb data: hub (mteb's loading), local (SentEval files; "
                                         "<data_dir>/mteb/<task>/ for others), auto (hub if reachable)")
    kfold: int = Field(10, ge=2, description="folds of the transfer probe's cross-validation")
    compare_base: bool = Field(False, description="pipeline: also score train.model with train.pooler as it was "
                                                  "before training (<eval dir>/base, cached), shown beside the "
                                                  "trained model in the report")
    output_dir: Path | None = resource(None, description="default: <run_dir>/eval")
