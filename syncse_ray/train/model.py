"""The SimCSE encoder: a transformers backbone, a pooler, and optionally an MLM head. Pure PyTorch (no Ray).

The poolers are `syncse_ray.models.pooling`'s (one implementation for training, evaluation, export and serving). For
`cls` and `cls_before_pooler` training puts a newly initialised MLP z = tanh(W·h_L[:, 0] + b) on top, as SimCSE
does; at test time (eval mode) `cls` keeps it and `cls_before_pooler` drops it.

The backbone's own pretrained pooler (BERT's/RoBERTa's `pooler`) is dropped: SimCSE trains its own MLP.
Dropout is the noise of unsupervised SimCSE and is on whenever the module is in train mode. By default it stays
whatever the backbone config says (0.1 for BERT, RoBERTa and all-MiniLM-L6-v2; 0 for LLaMA-style decoders such as
SmolLM2, whose two "views" are then identical). `dropout=p` sets it: every dropout probability the config has
(`DROPOUT_FIELDS`), and where the architecture has no hidden dropout (LLaMA, Mistral, Qwen: attention dropout only)
dropout p on each sublayer's output before it joins the residual stream (the attention's `o_proj` and the `mlp`),
where BERT applies its hidden dropout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from syncse_ray.models.pooling import check_pooler, needs_hidden_states, pool

# transformers config fields that are dropout probabilities (BERT/RoBERTa/MiniLM, DistilBERT, GPT-2, LLaMA-style, …)
DROPOUT_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "hidden_dropout", "attention_dropout",
                  "dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop")
# of those, the ones that put dropout on the residual stream; a config with none gets the sublayer-output hooks
HIDDEN_DROPOUT_FIELDS = ("hidden_dropout_prob", "hidden_dropout", "dropout", "resid_pdrop")
# LLaMA-style decoder layers' sublayers whose outputs are added to the residual stream
SUBLAYER_OUTPUTS = ("self_attn.o_proj", "mlp")


def _sublayer_dropout(p: float):
    def hook(module: nn.Module, args, output: torch.Tensor) -> torch.Tensor:
        return nn.functional.dropout(output, p, training=module.training)

    return hook


class SimCSEModel(nn.Module):
    """Backbone + pooler (+ MLM head). `forward` returns sentence vectors and the MLM loss (None if off)."""

    def __init__(self, lm: nn.Module, pooler: str):
        super().__init__()
        check_pooler(pooler)
        self.lm = lm  # AutoModel, or AutoModelForMaskedLM when the MLM auxiliary loss is on
        self.pooler = pooler
        self.dropout_applied: list[str] = []  # what `dropout=` set (config fields, hooked sublayers), for the log
        hidden = self.backbone.config.hidden_size
        self.mlp = (nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh())
                    if pooler in ("cls", "cls_before_pooler") else None)

    @classmethod
    def from_pretrained(cls, path: str | Path, pooler: str, mlm: bool = False,
                        dtype: torch.dtype = torch.float32, dropout: float | None = None) -> SimCSEModel:
        """Load in `dtype` (the weights; transformers keeps buffers such as RoPE frequencies in float32, which
        `model.to(torch.bfloat16)` would not). `dropout`: None keeps the backbone's own; p sets it (module doc)."""
        from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM

        fields, overrides = [], {}
        if dropout is not None:  # the config read twice only when something in it changes
            config = AutoConfig.from_pretrained(str(path))
            fields = [f for f in DROPOUT_FIELDS if isinstance(getattr(config, f, None), (int, float))]
            for field in fields:
                setattr(config, field, dropout)
            overrides["config"] = config
        lm = (AutoModelForMaskedLM if mlm else AutoModel).from_pretrained(str(path), dtype=dtype, **overrides)
        if getattr(lm.base_model, "pooler", None) is not None:
            lm.base_model.pooler = None  # unused: SimCSE's MLP replaces it (and DDP would see unused params)
        model = cls(lm, pooler)
        if model.mlp is not None:
            model.mlp.to(dtype)
        if dropout is not None:
            model.dropout_applied = list(fields)
            if not any(f in fields for f in HIDDEN_DROPOUT_FIELDS):
                for name, module in model.backbone.named_modules():
                    if name.endswith(SUBLAYER_OUTPUTS) and ".layers." in f".{name}":
                        module.register_forward_hook(_sublayer_dropout(dropout))
                        model.dropout_applied.append(name)
            if not model.dropout_applied:
                raise ValueError(f"train.dropout: {type(lm).__name__} has no dropout setting and no "
                                 f"{' / '.join(SUBLAYER_OUTPUTS)} sublayers to put dropout on")
        return model

    @property
    def backbone(self) -> nn.Module:
        return self.lm.base_model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None, mlm_input_ids: torch.Tensor | None = None,
                mlm_labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                            output_hidden_states=needs_hidden_states(self.pooler), **extra)
        use_mlp = self.pooler == "cls" or (self.pooler == "cls_before_pooler" and self.training)
        vectors = pool(self.pooler, out, attention_mask, self.mlp if use_mlp else None)
        mlm_loss = None
        if mlm_input_ids is not None:
            mlm_loss = self.lm(input_ids=mlm_input_ids, attention_mask=attention_mask, labels=mlm_labels,
                               **extra).loss
        return vectors, mlm_loss

    @torch.no_grad()
    def encode(self, sentences: list[str], tokenizer, max_seq_length: int, batch_size: int = 64) -> np.ndarray:
        """Test-time vectors (eval mode: no dropout; no MLP for cls_before_pooler), float32 numpy [n, d]."""
        from syncse_ray.models.encoders import encode_by_length

        was_training = self.training
        self.eval()
        device = next(self.parameters()).device

        def encode_batch(batch: list[str]) -> np.ndarray:
            tokens = tokenizer(batch, padding=True, truncation=True, max_length=max_seq_length,
                               return_tensors="pt").to(device)
            return self(**tokens)[0].float().cpu().numpy()

        try:
            return encode_by_length(sentences, encode_batch, batch_size=batch_size,
                                    dim=self.backbone.config.hidden_size)
        finally:
            self.train(was_training)
