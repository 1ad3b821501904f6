"""Poolers for decoder backbones (avg, last) against hand computations, and one set of vectors from training,
export, evaluation and serving for the bundled SmolLM2 used as an encoder. No Ray."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from syncse_ray.models.pooling import pool_tokens, prepare_tokenizer, st_pooling

SENTENCES = ["A man is playing a guitar on the street.", "Dogs run.", "The cat sat on the mat near the door.",
             "Two children are swimming in a lake while their parents watch from the shore.", "Rain."]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("side", ["right", "left"])
def test_poolers_match_a_hand_computation(side):
    torch.manual_seed(0)
    lengths = [5, 2, 3, 1]
    T, d = 6, 4
    h = torch.randn(len(lengths), T, d)
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for b, n in enumerate(lengths):
        if side == "right":
            mask[b, :n] = 1
        else:
            mask[b, T - n:] = 1
    last = pool_tokens(st_pooling(d, "last"), h, mask)
    avg = pool_tokens(st_pooling(d, "avg"), h, mask)
    for b, n in enumerate(lengths):
        idx = n - 1 if side == "right" else T - 1  # the last position whose mask is 1
        assert torch.equal(last[b], h[b, idx])
        positions = range(n) if side == "right" else range(T - n, T)
        assert torch.allclose(avg[b], sum(h[b, t] for t in positions) / n, atol=1e-6)


@pytest.fixture(scope="module")
def smollm2_tokenizer(smollm2_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_path)


def test_last_pooler_tokenizer_appends_eos_once_and_last_token_is_eos(smollm2_tokenizer):
    tok = copy.deepcopy(smollm2_tokenizer)
    plain = tok("Dogs run.")["input_ids"]
    assert plain[-1] != tok.eos_token_id  # SmolLM2 appends nothing by itself
    prepare_tokenizer(tok, "last")
    prepare_tokenizer(tok, "last")  # idempotent: still one EOS
    assert tok("Dogs run.")["input_ids"] == plain + [tok.eos_token_id]
    for side in ("right", "left"):
        tok.padding_side = side
        enc = tok(SENTENCES, padding=True, truncation=True, max_length=8, return_tensors="pt")
        values, flipped = enc["attention_mask"].flip(1).max(1)
        last_index = enc["attention_mask"].shape[1] - 1 - flipped
        assert bool((values == 1).all())
        # The last attended token is EOS for every row, also when truncation cut the sentence (max_length 8).
        assert (enc["input_ids"][torch.arange(len(SENTENCES)), last_index] == tok.eos_token_id).all()
        assert int(enc["attention_mask"].sum(1).max()) == 8


def test_avg_pooler_leaves_the_tokenizer_alone_and_a_missing_pad_token_is_set(smollm2_tokenizer, minilm_path):
    from transformers import AutoTokenizer

    tok = copy.deepcopy(smollm2_tokenizer)
    before = tok("Dogs run.")["input_ids"]
    prepare_tokenizer(tok, "avg")
    assert tok("Dogs run.")["input_ids"] == before

    tok.pad_token = None
    assert tok.pad_token is None
    prepare_tokenizer(tok, "avg")
    assert tok.pad_token == tok.eos_token
    enc = tok(SENTENCES[:2], padding=True)
    assert enc["attention_mask"][1].count(0) > 0  # it pads (and the mask says where)

    bert = AutoTokenizer.from_pretrained(minilm_path)  # encoder tokenizer: ends with [SEP], has no EOS to add
    ids = bert("Dogs run.")["input_ids"]
    assert prepare_tokenizer(bert, "last")("Dogs run.")["input_ids"] == ids


@pytest.mark.parametrize("pooler", ["avg", "last"])
def test_padding_side_does_not_change_smollm2_vectors(smollm2_path, smollm2_tokenizer, pooler):
    from syncse_ray.train.model import SimCSEModel

    model = SimCSEModel.from_pretrained(smollm2_path, pooler).eval()  # float32: compares exactly enough
    tok = prepare_tokenizer(copy.deepcopy(smollm2_tokenizer), pooler)
    tok.padding_side = "right"
    right = model.encode(SENTENCES, tok, 32)
    tok.padding_side = "left"
    left = model.encode(SENTENCES, tok, 32)
    # one at a time: no padding at all
    single = np.concatenate([model.encode([s], tok, 32) for s in SENTENCES])
    assert _cos(right, left).min() >= 0.99999
    assert _cos(right, single).min() >= 0.99999


@pytest.mark.slow  # trains, exports and serves SmolLM2 in bf16 (~30-50 s each on 2 AMX cores, ~5x on AVX2)
@pytest.mark.parametrize("pooler", ["avg", "last"])
def test_smollm2_bf16_train_export_eval_and_serve_give_the_same_vectors(smollm2_path, smollm2_tokenizer, pooler,
                                                                       tmp_path):
    from sentence_transformers import SentenceTransformer

    from syncse_ray.models.encoders import load_encoder
    from syncse_ray.serve.encoder import SentenceEncoder
    from syncse_ray.train.export import export_sentence_transformer
    from syncse_ray.train.losses import SimCSELoss
    from syncse_ray.train.model import SimCSEModel

    torch.manual_seed(0)
    tok = prepare_tokenizer(copy.deepcopy(smollm2_tokenizer), pooler)
    model = SimCSEModel.from_pretrained(smollm2_path, pooler, dtype=torch.bfloat16)

    # The untrained model (the quality benchmark's arm 1) as the eval encoder sees it: same pooling.
    base_vectors = model.encode(SENTENCES, tok, 32)
    # bf16 asked for on every path: `auto` would load fp32 on a CPU without native bf16 (AVX2), and the
    # comparison is of the same weights in the same precision
    base_eval = load_encoder("bundled:smollm2-135m-instruct", pooler=pooler, precision="bf16").encode(
        SENTENCES, show_progress=False)
    assert _cos(base_vectors, base_eval).min() >= 0.9999

    # One real training step in bf16, so the exported weights are not the base model's.
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    batch = tok(SENTENCES[:4] + SENTENCES[1:5] + SENTENCES[:4][::-1], padding=True, return_tensors="pt")
    vectors, _ = model(**batch)
    SimCSELoss(0.05)(*vectors.view(3, 4, -1)).backward()
    optimizer.step()
    trained = model.encode(SENTENCES, tok, 32)  # train mode off inside encode
    assert _cos(trained, base_vectors).min() < 0.9999  # the step changed the model

    folder = export_sentence_transformer(model, tok, tmp_path / "st", 32)
    st = SentenceTransformer(str(folder), device="cpu")
    assert next(st.parameters()).dtype == torch.bfloat16
    assert type(st[1]).__name__ == "Pooling" and st[1].pooling_mode == {"avg": "mean", "last": "lasttoken"}[pooler]
    exported = st.encode(SENTENCES, convert_to_numpy=True)
    evaluated = load_encoder(str(folder), precision="bf16").encode(SENTENCES, show_progress=False)
    served = SentenceEncoder(folder, precision="bf16").encode(SENTENCES)
    for other in (exported, evaluated, served):
        assert _cos(trained, other).min() >= 0.9999
