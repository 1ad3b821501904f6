"""Token vectors -> one sentence vector, the same way in training, evaluation, export and serving. No Ray.

The poolers (SimCSE's names; ``h_l`` = layer l's hidden states, ``h_0`` the embedding layer's, ``h_L`` the last,
``m`` the attention mask):

    cls                MLP(h_L[:, 0]) with MLP(x) = tanh(W x + b): training trains a new MLP (SimCSE); for a plain
                       transformers model the evaluation encoder uses the model's own pooler (``pooler_output``:
                       BERT's/RoBERTa's pooler is that MLP; SimCSE checkpoints keep their trained MLP there)
    cls_before_pooler  h_L[:, 0] (training still trains the MLP on top, as SimCSE does; test time drops it)
    avg                sum_t m_t h_L,t / sum_t m_t
    last               h_L at the last position with m_t = 1 (decoder backbones; EOS appended, see below)
    avg_top2           the masked mean of (h_L + h_{L-1}) / 2
    avg_first_last     the masked mean of (h_1 + h_L) / 2 (h_1: the first transformer layer's output)

`pool` is the one implementation; `syncse_ray.train.export` writes the same poolers as sentence-transformers
modules, so an exported folder pools as training did.

The masked mean (`avg`) and the last-token (`last`) poolers are sentence-transformers' own `Pooling` module
(`pooling_mode="mean"` / `"lasttoken"`): training and the evaluation encoder call it directly (`pool_tokens`), and
the exported folder holds the same module, so `SentenceTransformer(folder)` (what `syncse serve` and
`syncse eval <folder>` load) pools exactly as the trained model did.

Decoder backbones (causal LMs such as SmolLM2) need two tokenizer settings, applied by `prepare_tokenizer` and
saved with the exported folder's tokenizer, so every loader gets them:

- a pad token: when the tokenizer has none, its EOS token (else its UNK token) pads; padded positions have
  attention mask 0, so which id pads never changes a vector;
- for `last`: an EOS token appended to every sentence when the tokenizer does not add one itself (the
  tokenizer's post-processor is changed, so truncation keeps room for it). In a causal LM only the last
  position has attended to the whole sentence; an EOS there makes "the last token" the same token for every
  sentence, as LLM-based embedders (E5-Mistral, Qwen3-Embedding) do.

The last token is the last position whose attention mask is 1, so right and left padding give the same vector.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal, get_args

Pooler = Literal["cls", "cls_before_pooler", "avg", "last", "avg_top2", "avg_first_last"]
POOLERS: tuple[str, ...] = get_args(Pooler)
POOLING_MODES = {"avg": "mean", "last": "lasttoken"}  # our pooler name -> sentence-transformers pooling_mode
# pooler -> which hidden states (indices into transformers' `hidden_states`) are averaged before the masked mean
LAYER_PAIRS = {"avg_top2": (-2, -1), "avg_first_last": (1, -1)}


def check_pooler(pooler: str) -> str:
    if pooler not in POOLERS:
        raise ValueError(f"unknown pooler {pooler!r}; choose one of {', '.join(POOLERS)}")
    return pooler


def needs_hidden_states(pooler: str) -> bool:
    return pooler in LAYER_PAIRS


def pool(pooler: str, out, attention_mask, mlp=None):
    """Sentence vectors [B, d] from a transformers output (``last_hidden_state``; ``hidden_states`` when
    `needs_hidden_states`) and its [B, T] mask. ``mlp``: the cls poolers' MLP, applied to h_L[:, 0] when given."""
    if pooler in ("cls", "cls_before_pooler"):
        vector = out.last_hidden_state[:, 0]
        return mlp(vector) if mlp is not None else vector
    if pooler in POOLING_MODES:
        return pool_tokens(st_pooling(out.last_hidden_state.shape[-1], pooler), out.last_hidden_state,
                           attention_mask)
    first, second = (out.hidden_states[i] for i in LAYER_PAIRS[check_pooler(pooler)])
    mask = attention_mask.unsqueeze(-1).to(first.dtype)
    return (((first + second) / 2) * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def prepare_tokenizer(tokenizer, pooler: str):
    """Set a pad token if there is none and, for `last`, make the tokenizer append EOS. Returns the tokenizer
    (changed in place). Raises ValueError when `last` needs an EOS token the tokenizer cannot append."""
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise ValueError(f"tokenizer {type(tokenizer).__name__} has no pad, EOS or UNK token to pad with")
        tokenizer.pad_token = fallback
    if pooler == "last" and tokenizer.eos_token is not None and not _appends_eos(tokenizer):
        _append_eos(tokenizer)
        if not _appends_eos(tokenizer):
            raise ValueError(f"cannot make tokenizer {type(tokenizer).__name__} append its EOS token "
                             f"{tokenizer.eos_token!r} for last-token pooling")
    return tokenizer


def _appends_eos(tokenizer) -> bool:
    ids = tokenizer("a b")["input_ids"]
    return bool(ids) and ids[-1] == tokenizer.eos_token_id


def _append_eos(tokenizer) -> None:
    if hasattr(tokenizer, "add_eos_token"):  # transformers' own switch (rewrites the post-processor)
        tokenizer.add_eos_token = True
        if _appends_eos(tokenizer):
            return
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return
    from tokenizers import processors

    eos, eos_id = tokenizer.eos_token, tokenizer.eos_token_id
    backend.post_processor = processors.TemplateProcessing(
        single=f"$A:0 {eos}:0", pair=f"$A:0 {eos}:0 $B:1 {eos}:1", special_tokens=[(eos, eos_id)])


@lru_cache(maxsize=16)
def st_pooling(dimension: int, pooler: str):
    """The sentence-transformers `Pooling` module for `avg` or `last` (no weights: one per shape is shared)."""
    from sentence_transformers.sentence_transformer.modules import Pooling

    return Pooling(dimension, pooling_mode=POOLING_MODES[pooler])


def pool_tokens(pooling, token_embeddings, attention_mask):
    """Apply a `Pooling` module (from `st_pooling`) to [B, T, d] token vectors and their [B, T] mask."""
    features = {"token_embeddings": token_embeddings, "attention_mask": attention_mask}
    return pooling(features)["sentence_embedding"]
