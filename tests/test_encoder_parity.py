"""One meaning of the model: for every pooler, on an encoder (MiniLM) and a decoder (a small Llama with SmolLM2's
tokenizer) backbone, the training model's test-time vectors, `load_encoder` on the exported folder (what
`syncse eval` runs), `load_encoder` on the base model with the same pooler, and the serving encoder agree. No Ray."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from syncse_ray.models.encoders import load_encoder
from syncse_ray.models.pooling import POOLERS, prepare_tokenizer
from syncse_ray.models.references import ModelError

SENTENCES = ["A man is playing a guitar on the street.", "Dogs run.", "The cat sat on the mat near the door.",
             "Two children are swimming in a lake while their parents watch from the shore.", "Rain."]


def _cos(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def tiny_decoder(tmp_path_factory, smollm2_path):
    """A randomly initialised 2-layer Llama (SmolLM2's architecture and tokenizer), saved as a model folder."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaModel

    tok = AutoTokenizer.from_pretrained(smollm2_path)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.mark.slow  # 14 exports and reloads (~45 s in all on 2 cores)
@pytest.mark.parametrize("backbone", ["encoder", "decoder"])
@pytest.mark.parametrize("pooler", POOLERS)
def test_train_export_eval_and_serve_vectors_agree(pooler, backbone, minilm_path, tiny_decoder, tmp_path):
    from transformers import AutoTokenizer

    from syncse_ray.serve.encoder import SentenceEncoder
    from syncse_ray.train.export import export_sentence_transformer
    from syncse_ray.train.model import SimCSEModel

    base = minilm_path if backbone == "encoder" else tiny_decoder
    torch.manual_seed(0)
    model = SimCSEModel.from_pretrained(base, pooler)
    tok = prepare_tokenizer(AutoTokenizer.from_pretrained(base), pooler)
    trained = model.encode(SENTENCES, tok, 32)

    if pooler != "cls":  # cls: training trains a new MLP; a plain model's cls is its own pretrained pooler
        plain = load_encoder(str(base), pooler=pooler, max_seq_length=32)
        assert _cos(trained, plain.encode(SENTENCES, show_progress=False)).min() >= 0.9999

    folder = export_sentence_transformer(model, tok, tmp_path / "st", 32)
    evaluated = load_encoder(str(folder)).encode(SENTENCES, show_progress=False)
    evaluated_named = load_encoder(str(folder), pooler=pooler).encode(SENTENCES, show_progress=False)
    served = SentenceEncoder(folder).encode(SENTENCES)
    for other in (evaluated, evaluated_named, served):
        assert _cos(trained, other).min() >= 0.9999
    other_pooler = "avg" if pooler != "avg" else "last"
    with pytest.raises(ModelError, match=f"trained with pooler '{pooler}'"):
        load_encoder(str(folder), pooler=other_pooler)


def test_cls_of_a_plain_model_is_its_own_pooler_and_decoders_have_none(minilm_path, tiny_decoder):
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm_path)
    bert = AutoModel.from_pretrained(minilm_path).eval()
    with torch.no_grad():
        expected = bert(**tok(SENTENCES[:2], padding=True, return_tensors="pt")).pooler_output.numpy()
    got = load_encoder(str(minilm_path), pooler="cls").encode(SENTENCES[:2], show_progress=False)
    assert _cos(expected, got).min() >= 0.9999
    with pytest.raises(ModelError, match="no MLP pooler"):
        load_encoder(str(tiny_decoder), pooler="cls")


def test_pooler_list_is_one_list():
    from typing import get_args

    from syncse_ray.config.eval import EvalConfig
    from syncse_ray.config.train import TrainConfig

    train_choices = get_args(TrainConfig.model_fields["pooler"].annotation)
    eval_choices = get_args(get_args(EvalConfig.model_fields["pooler"].annotation)[0])
    assert tuple(train_choices) == tuple(eval_choices) == POOLERS
