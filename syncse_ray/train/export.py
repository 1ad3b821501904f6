"""Export a trained SimCSEModel as a sentence-transformers folder. No Ray.

    Transformer (the backbone, output_hidden_states for avg_top2 / avg_first_last)
      → [WeightedLayerPooling(weights 1 on the pooler's two layers, 0 between)]       avg_top2, avg_first_last
      → Pooling (cls | mean | lasttoken)                               (pooler avg: mean, last: lasttoken)
      → [Dense(d, d, Tanh) = the trained MLP]                                                       pooler cls

so `SentenceTransformer(folder).encode(s)` gives the training model's test-time vector: for `cls` the MLP is
kept, for `cls_before_pooler` it is dropped (as SimCSE does at test time). No Normalize module: cosine
similarity does not need it and the raw vectors stay comparable with the training model's.

The tokenizer is saved as `syncse_ray.models.pooling.prepare_tokenizer` set it up (pad token; EOS appended for `last`),
and the weights in `dtype` (default: as the model holds them; bf16 for a bf16-trained decoder), which
`SentenceTransformer(folder)` loads as saved. With `metadata["card"]` (`syncse_ray.train.facts.folder_facts`) the
folder's README.md is the model card of the training run; without, sentence-transformers' default card.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import torch

from syncse_ray.io import atomic_dir
from syncse_ray.models.pooling import LAYER_PAIRS, POOLING_MODES, needs_hidden_states, prepare_tokenizer
from syncse_ray.train.card import write_model_card
from syncse_ray.train.facts import TRAIN_META
from syncse_ray.train.model import SimCSEModel

INFERENCE_MAX_LENGTH = 512
log = logging.getLogger(__name__)


def inference_max_length(tokenizer, config) -> int:
    """How long an input the exported model reads: the backbone's limit, at most 512 tokens. Training's
    max_seq_length (SimCSE: 32) shapes training batches only; SentEval and SimCSE's evaluation do not truncate
    a sentence to it, and neither should `syncse eval` or `syncse serve`."""
    limits = (INFERENCE_MAX_LENGTH, getattr(config, "max_position_embeddings", None), tokenizer.model_max_length)
    return min(n for n in limits if isinstance(n, int) and n > 0)


def export_sentence_transformer(model: SimCSEModel, tokenizer, out_dir: Path, max_seq_length: int | None = None,
                                metadata: dict | None = None, dtype: torch.dtype | None = None) -> Path:
    """`max_seq_length`: the folder's input limit (default `inference_max_length`)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import (
        Dense,
        Pooling,
        Transformer,
        WeightedLayerPooling,
    )

    out_dir = Path(out_dir)
    backbone = model.backbone
    hidden = backbone.config.hidden_size
    tokenizer = prepare_tokenizer(tokenizer, model.pooler)
    max_seq_length = max_seq_length or inference_max_length(tokenizer, backbone.config)
    if dtype is not None:
        backbone = backbone.to(dtype)
    with tempfile.TemporaryDirectory() as tmp:
        if needs_hidden_states(model.pooler):
            backbone.config.output_hidden_states = True
        backbone.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        # Plain text in: sentence-transformers would otherwise wrap every sentence in the chat template of a
        # tokenizer that has one (SmolLM2's), which training never does.
        modules: list[torch.nn.Module] = [Transformer(
            tmp, max_seq_length=max_seq_length, module_output_name="token_embeddings",
            modality_config={"text": {"method": "forward", "method_output_name": "last_hidden_state"}})]
        if needs_hidden_states(model.pooler):
            layers = backbone.config.num_hidden_layers
            picked = [i % (layers + 1) for i in LAYER_PAIRS[model.pooler]]  # indices into hidden_states
            start = min(picked)
            weights = torch.zeros(layers + 1 - start)
            for i in picked:
                weights[i - start] = 1.0
            modules.append(WeightedLayerPooling(hidden, num_hidden_layers=layers, layer_start=start,
                                                layer_weights=torch.nn.Parameter(weights, requires_grad=False)))
        modules.append(Pooling(hidden, pooling_mode=POOLING_MODES.get(model.pooler, "cls" if
                                                                     model.pooler.startswith("cls") else "mean")))
        if model.pooler == "cls":
            linear = model.mlp[0]
            modules.append(Dense(hidden, hidden, activation_function=torch.nn.Tanh(),
                                 init_weight=linear.weight.detach().clone().float(),
                                 init_bias=linear.bias.detach().clone().float()))
        with atomic_dir(out_dir) as folder:
            st_model = SentenceTransformer(modules=modules, device="cpu")
            st_model.save(str(folder))
            (folder / TRAIN_META).write_text(json.dumps({"pooler": model.pooler, **(metadata or {})}, indent=2))
            if metadata and "card" in metadata:  # README.md: the model card (syncse_ray.train.card)
                try:
                    write_model_card(folder, st_model)
                except Exception as exc:  # documentation: never lose a trained model over it
                    log.warning("model card not written for %s (sentence-transformers' default kept): %s: %s",
                                out_dir, type(exc).__name__, exc, exc_info=True)
    return out_dir
