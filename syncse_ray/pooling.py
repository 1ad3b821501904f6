"""Token vectors -> one sentence vector, the same way in training, evaluation, export and serving. No Ray.

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

POOLING_MODES = {"avg": "mean", "last": "lasttoken"}  # our pooler name -> sentence-transformers pooling_mode


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


def st_pooling(dimension: int, pooler: str):
    """The sentence-transformers `Pooling` module for `avg` or `last`."""
    from sentence_transformers.sentence_transformer.modules import Pooling

    return Pooling(dimension, pooling_mode=POOLING_MODES[pooler])


def pool_tokens(pooling, token_embeddings, attention_mask):
    """Apply a `Pooling` module (from `st_pooling`) to [B, T, d] token vectors and their [B, T] mask."""
    features = {"token_embeddings": token_embeddings, "attention_mask": attention_mask}
    return pooling(features)["sentence_embedding"]
