"""The SimCSE encoder: a transformers backbone, a pooler, and optionally an MLM head. Pure PyTorch (no Ray).

Poolers (h = last hidden states [B, T, d], m = attention mask, h¹ = the first layer's output):

    cls                CLS = h[:, 0], then a newly initialised MLP  z = tanh(W·CLS + b), in training AND at test time
    cls_before_pooler  the MLP in training only; at test time (eval mode) the plain CLS vector
    avg                Σ_t m_t h_t / Σ_t m_t
    last               h[b, t_b], t_b = the last position with m_t = 1 (right or left padding; decoder backbones,
                       with an EOS appended by the tokenizer: syncse_ray.pooling.prepare_tokenizer)
    avg_first_last     Σ_t m_t (h¹_t + h_t) / 2 / Σ_t m_t

`avg` and `last` are sentence-transformers' `Pooling` module (syncse_ray.pooling), the module the exported
folder holds, so training, evaluation and serving pool with one implementation.

The backbone's own pretrained pooler (BERT's/RoBERTa's `pooler`) is dropped: SimCSE trains its own MLP.
Dropout stays whatever the backbone config says (0.1 for BERT, RoBERTa and all-MiniLM-L6-v2); it is the noise
of unsupervised SimCSE and is on whenever the module is in train mode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from syncse_ray.pooling import POOLING_MODES, pool_tokens, st_pooling

POOLERS = ("cls", "cls_before_pooler", "avg", "last", "avg_first_last")


class SimCSEModel(nn.Module):
    """Backbone + pooler (+ MLM head). `forward` returns sentence vectors and the MLM loss (None if off)."""

    def __init__(self, lm: nn.Module, pooler: str):
        super().__init__()
        if pooler not in POOLERS:
            raise ValueError(f"unknown pooler {pooler!r}; known: {', '.join(POOLERS)}")
        self.lm = lm  # AutoModel, or AutoModelForMaskedLM when the MLM auxiliary loss is on
        self.pooler = pooler
        hidden = self.backbone.config.hidden_size
        self.mlp = (nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh())
                    if pooler in ("cls", "cls_before_pooler") else None)
        # sentence-transformers' Pooling (avg, last): no weights, so checkpoints keep the backbone's (+ MLP) keys.
        self._pooling = st_pooling(hidden, pooler) if pooler in POOLING_MODES else None

    @classmethod
    def from_pretrained(cls, path: str | Path, pooler: str, mlm: bool = False,
                        dtype: torch.dtype = torch.float32) -> SimCSEModel:
        """Load in `dtype` (the weights; transformers keeps buffers such as RoPE frequencies in float32, which
        `model.to(torch.bfloat16)` would not)."""
        from transformers import AutoModel, AutoModelForMaskedLM

        lm = (AutoModelForMaskedLM if mlm else AutoModel).from_pretrained(str(path), dtype=dtype)
        if getattr(lm.base_model, "pooler", None) is not None:
            lm.base_model.pooler = None  # unused: SimCSE's MLP replaces it (and DDP would see unused params)
        model = cls(lm, pooler)
        if model.mlp is not None:
            model.mlp.to(dtype)
        return model

    @property
    def backbone(self) -> nn.Module:
        return self.lm.base_model

    @property
    def has_mlm_head(self) -> bool:
        return self.lm is not self.lm.base_model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None, mlm_input_ids: torch.Tensor | None = None,
                mlm_labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                            output_hidden_states=self.pooler == "avg_first_last", **extra)
        vectors = self.pool(out, attention_mask)
        mlm_loss = None
        if mlm_input_ids is not None:
            mlm_loss = self.lm(input_ids=mlm_input_ids, attention_mask=attention_mask, labels=mlm_labels,
                               **extra).loss
        return vectors, mlm_loss

    def pool(self, out, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.pooler in ("cls", "cls_before_pooler"):
            cls_vec = out.last_hidden_state[:, 0]
            use_mlp = self.pooler == "cls" or self.training
            return self.mlp(cls_vec) if use_mlp else cls_vec
        if self._pooling is not None:
            return pool_tokens(self._pooling, out.last_hidden_state, attention_mask)
        mask = attention_mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
        tokens = (out.hidden_states[1] + out.hidden_states[-1]) / 2  # avg_first_last
        return (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    @torch.no_grad()
    def encode(self, sentences: list[str], tokenizer, max_seq_length: int, batch_size: int = 64) -> np.ndarray:
        """Test-time vectors (eval mode: no dropout; no MLP for cls_before_pooler), float32 numpy [n, d]."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        parts = []
        for start in range(0, len(sentences), batch_size):
            batch = tokenizer(sentences[start:start + batch_size], padding=True, truncation=True,
                              max_length=max_seq_length, return_tensors="pt").to(device)
            vectors, _ = self(**batch)
            parts.append(vectors.float().cpu().numpy())
        self.train(was_training)
        dim = self.backbone.config.hidden_size
        return np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float32)
