"""Training inputs and the model, without Ray: data files and columns, bad inputs, poolers, dropout, export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from syncse_ray.config import load_config
from syncse_ray.train.data import TrainDataError, read_training_table, tokenize_views, views


def test_triplets_keep_training_columns_drop_blank_rows_and_shuffle(tmp_path):
    rows = pd.DataFrame({"sent0": [f"a{i}" for i in range(20)], "sent1": [f"b{i}" for i in range(20)],
                         "hard_neg": [f"c{i}" for i in range(20)], "model": "smollm2"})
    rows.loc[3, "sent1"] = "   "
    rows.loc[5, "hard_neg"] = None
    (tmp_path / "synth").mkdir()
    rows.iloc[:10].to_parquet(tmp_path / "synth" / "part-0.parquet")
    rows.iloc[10:].to_parquet(tmp_path / "synth" / "part-1.parquet")
    table = read_training_table(tmp_path / "synth", "supervised", seed=0)
    assert table.column_names == ["sent0", "sent1", "hard_neg"]
    assert table.num_rows == 18
    got = table.to_pandas()
    assert set(got.sent0) == {f"a{i}" for i in range(20)} - {"a3", "a5"}
    assert (got.sent1.str[1:] == got.sent0.str[1:]).all()  # rows stay together
    assert list(got.sent0) != sorted(got.sent0, key=lambda s: int(s[1:]))  # shuffled ...
    assert read_training_table(tmp_path / "synth", "supervised", seed=0).equals(table)  # ... reproducibly


def test_pairs_csv_jsonl_and_sentences(tmp_path):
    pd.DataFrame({"sent0": ["x", "y"], "sent1": ["x2", "y2"]}).to_csv(tmp_path / "pairs.csv", index=False)
    assert read_training_table(tmp_path / "pairs.csv", "supervised", 0).column_names == ["sent0", "sent1"]
    pd.DataFrame({"text": ["one", "two"]}).to_json(tmp_path / "s.jsonl", orient="records", lines=True)
    assert read_training_table(tmp_path / "s.jsonl", "unsupervised", 0).column_names == ["sent0"]
    (tmp_path / "wiki.txt").write_text("first sentence\n\nsecond sentence\n")
    table = read_training_table(tmp_path / "wiki.txt", "unsupervised", 0)
    assert sorted(table.column("sent0").to_pylist()) == ["first sentence", "second sentence"]
    rows = table.to_pydict()
    assert views(rows, "unsupervised")[0] == views(rows, "unsupervised")[1]  # the same sentence twice


def test_snli_folder_gives_gold_triplets(data_dir):
    table = read_training_table(data_dir / "seeds" / "snli", "supervised", 0)
    assert table.column_names == ["sent0", "sent1", "hard_neg"]
    assert 5000 < table.num_rows < 7000  # about 3k premises with both labels in each of dev and test
    row = table.slice(0, 1).to_pylist()[0]
    assert len({row["sent0"], row["sent1"], row["hard_neg"]}) == 3


def test_missing_columns_are_named(tmp_path):
    pd.DataFrame({"sent0": ["a"], "hard_neg": ["c"]}).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(TrainDataError, match=r"t.parquet: supervised .* missing sent1; found \['hard_neg', 'sent0'\]"):
        read_training_table(tmp_path / "t.parquet", "supervised", 0)
    pd.DataFrame({"premise": ["a"]}).to_parquet(tmp_path / "u.parquet")
    with pytest.raises(TrainDataError, match="needs a 'sent0' or 'text' column; found \\['premise'\\]"):
        read_training_table(tmp_path / "u.parquet", "unsupervised", 0)


def test_empty_data_is_an_error(tmp_path):
    pd.DataFrame({"sent0": pd.Series([], dtype=str), "sent1": pd.Series([], dtype=str)}).to_parquet(
        tmp_path / "empty.parquet")
    with pytest.raises(TrainDataError, match="holds no rows with non-empty sent0, sent1"):
        read_training_table(tmp_path / "empty.parquet", "supervised", 0)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(TrainDataError, match="cannot read training data .*empty.csv"):
        read_training_table(tmp_path / "empty.csv", "supervised", 0)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(TrainDataError, match="holds no .*parquet.* files"):
        read_training_table(tmp_path / "nothing", "supervised", 0)
    with pytest.raises(TrainDataError, match="does not exist"):
        read_training_table(tmp_path / "missing", "supervised", 0)


def _cfg(tmp_path, *overrides):
    return load_config(None, [f"run_dir={tmp_path / 'run'}", f"train.data={tmp_path / 't.parquet'}", *overrides])


def test_unloadable_base_model_is_named(tmp_path):
    from syncse_ray.train import TrainInputError, run_train

    pd.DataFrame({"sent0": ["a"] * 8, "sent1": ["b"] * 8}).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(TrainInputError, match="cannot load the base model train.model='/nonexistent/encoder'"):
        run_train(_cfg(tmp_path, "train.model=/nonexistent/encoder"))
    (tmp_path / "not_a_model").mkdir()
    (tmp_path / "not_a_model" / "notes.txt").write_text("no weights here")
    with pytest.raises(TrainInputError, match="cannot load the base model .*not_a_model"):
        run_train(_cfg(tmp_path, f"train.model={tmp_path / 'not_a_model'}"))


def test_too_few_rows_for_one_step(tmp_path, minilm_path):
    from syncse_ray.train import run_train

    pd.DataFrame({"sent0": ["a"] * 8, "sent1": ["b"] * 8}).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(TrainDataError, match="8 training rows are too few .* = 64"):
        run_train(_cfg(tmp_path, "train.batch_size=32", "train.num_workers=2"))
    assert not (tmp_path / "run" / "train").exists()  # a config that cannot start leaves nothing behind


def test_batch_is_one_dynamically_padded_tensor_of_all_views(minilm_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    rows = {"sent0": ["a b", "c"], "sent1": ["d e f g", "h"], "hard_neg": ["i", "j k"]}
    batch = tokenize_views(views(rows, "supervised"), tokenizer, max_seq_length=5)
    assert batch["input_ids"].shape == (6, 5)  # 3 views × 2 rows; longest (4 words + 2 specials) cut to 5
    batch = tokenize_views(views({"sent0": ["a", "b"]}, "unsupervised"), tokenizer, max_seq_length=32)
    assert batch["input_ids"].shape == (4, 3)  # padded to the longest in the batch, not to 32


@pytest.mark.slow  # an export and reload a pooler (~7 s each)
@pytest.mark.parametrize("pooler", ["cls", "cls_before_pooler", "avg", "avg_first_last"])
def test_dropout_is_on_in_training_and_export_matches_every_pooler(pooler, minilm_path, tmp_path):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    from syncse_ray.train.export import export_sentence_transformer
    from syncse_ray.train.model import SimCSEModel

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    torch.manual_seed(0)
    model = SimCSEModel.from_pretrained(minilm_path, pooler).train()
    sentences = ["a man is playing a guitar .", "the cat sat on the mat", "two dogs run through the snow"]
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    first, _ = model(**batch)
    second, _ = model(**batch)
    assert (first - second).abs().max() > 1e-3  # two dropout views differ: unsupervised SimCSE has noise

    expected = model.encode(sentences, tokenizer, 32)
    np.testing.assert_array_equal(expected, model.encode(sentences, tokenizer, 32))  # eval: no dropout
    export_sentence_transformer(model, tokenizer, tmp_path / "st", 32)
    got = SentenceTransformer(str(tmp_path / "st"), device="cpu").encode(sentences)
    cos = (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    assert cos.min() >= 0.9999


def _tiny_llama(folder: Path) -> Path:
    """A 2-layer LLaMA-style decoder (SmolLM2's architecture: no hidden dropout, attention dropout 0)."""
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(0)
    LlamaModel(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2)).save_pretrained(folder)
    return folder


def test_train_dropout_gives_a_decoder_two_views_and_sets_bert_style_configs(tmp_path, minilm_path):
    from syncse_ray.train.model import SimCSEModel

    llama = _tiny_llama(tmp_path / "llama")
    batch = {"input_ids": torch.randint(1, 64, (3, 7), generator=torch.Generator().manual_seed(0)),
             "attention_mask": torch.ones(3, 7, dtype=torch.long)}
    plain = SimCSEModel.from_pretrained(llama, "avg").train()
    assert torch.equal(plain(**batch)[0], plain(**batch)[0])  # as shipped: no noise, unsup SimCSE sees one view
    noisy = SimCSEModel.from_pretrained(llama, "avg", dropout=0.1).train()
    assert noisy.backbone.config.attention_dropout == 0.1
    assert noisy.dropout_applied == ["attention_dropout", "layers.0.self_attn.o_proj", "layers.0.mlp",
                                     "layers.1.self_attn.o_proj", "layers.1.mlp"]
    first, second = noisy(**batch)[0], noisy(**batch)[0]
    assert (first - second).abs().max() > 1e-3  # two views differ
    noisy.eval()
    torch.testing.assert_close(noisy(**batch)[0], plain.eval()(**batch)[0], rtol=0, atol=0)  # eval: none

    bert = SimCSEModel.from_pretrained(minilm_path, "avg", dropout=0.0).train()
    assert bert.dropout_applied == ["hidden_dropout_prob", "attention_probs_dropout_prob"]
    assert bert.backbone.config.hidden_dropout_prob == 0.0  # p = 0 turns MiniLM's 0.1 off: one view again
    tokens = {"input_ids": torch.tensor([[101, 1037, 3899, 102]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    assert torch.equal(bert(**tokens)[0], bert(**tokens)[0])
    with pytest.raises(ValueError, match="less than 1"):
        load_config(None, ["train.dropout=1.0"])


def test_mlm_head_gives_an_auxiliary_loss(minilm_path):
    from transformers import AutoTokenizer, DataCollatorForLanguageModeling

    from syncse_ray.train.model import SimCSEModel

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    model = SimCSEModel.from_pretrained(minilm_path, "cls", mlm=True)
    batch = tokenizer(["a man is playing a guitar on the stage tonight .", "a dog ."] * 2, padding=True,
                      return_tensors="pt")
    # the masking the training loop does (seeded per worker)
    masker = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, seed=0)
    mlm = masker([{"input_ids": ids} for ids in batch["input_ids"].tolist()])
    masked, labels = mlm["input_ids"], mlm["labels"]
    assert (labels != -100).any() and (labels[:, 0] == -100).all()  # [CLS] never chosen
    assert (labels[batch["attention_mask"] == 0] == -100).all()  # nor padding
    again = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, seed=0)(
        [{"input_ids": ids} for ids in batch["input_ids"].tolist()])
    assert torch.equal(again["input_ids"], masked)  # seeded: a resumed worker masks the same way
    vectors, mlm_loss = model(**batch, mlm_input_ids=masked, mlm_labels=labels)
    assert vectors.shape == (4, 384) and torch.isfinite(mlm_loss) and mlm_loss > 0


def test_train_recipes_load_with_the_paper_hyperparameters():
    from syncse_ray.config.root import Config

    repo = Path(__file__).resolve().parents[1]
    sup = load_config(repo / "configs" / "train_simcse_sup_roberta_base.yaml").train
    assert (sup.model, sup.pooler, sup.objective, sup.lr, sup.epochs, sup.max_seq_length) == (
        "roberta-base", "cls", "supervised", 5e-5, 3, 32)
    assert sup.batch_size * sup.num_workers * sup.gradient_accumulation_steps == 512
    assert (sup.warmup_ratio, sup.precision, sup.eval_steps, sup.temperature) == (0.0, "auto", 25, 0.05)
    unsup = load_config(repo / "configs" / "train_simcse_unsup_roberta_base.yaml").train
    assert (unsup.objective, unsup.pooler, unsup.lr, unsup.epochs) == ("unsupervised", "cls_before_pooler", 3e-5, 1)
    assert unsup.batch_size * unsup.num_workers == 64
    cpu = load_config(repo / "configs" / "train_snli_cpu.yaml")
    assert isinstance(cpu, Config) and str(cpu.train.data).endswith("seeds/snli") and not cpu.train.use_gpu


@pytest.mark.parametrize("overrides,message", [
    (["train.false_negatives.mask_ratio=1.0"], "needs a reference: set guide"),
    (["train.false_negatives.guide=bundled:all-minilm-l6-v2"], "nothing uses it"),
    (["train.false_negatives.reference=judge_scores"], "nothing uses it"),
    (["train.false_negatives.reference=judge_scores", "train.false_negatives.mask_ratio=1.0",
      "train.false_negatives.guide=bundled:all-minilm-l6-v2"], "unset guide"),
    (["train.false_negatives.reference=judge_scores", "train.false_negatives.decay_sigma=4",
      "train.false_negatives.decay_scope=all"], "use decay_scope hard_negative"),
    (["train.false_negatives.reference=judge_scores", "train.false_negatives.mask_ratio=1.0",
      "train.objective=unsupervised"], "unsupervised training does not have"),
    (["train.false_negatives.guide=bundled:all-minilm-l6-v2", "train.false_negatives.decay_sigma=4",
      "train.objective=unsupervised"], "use decay_scope all"),
    (["train.batch_size=10", "train.mini_batch_size=4"], "multiple of mini_batch_size"),
    (["train.mini_batch_size=4", "train.gradient_accumulation_steps=2"], "replaces gradient accumulation"),
    (["train.mini_batch_size=4", "train.mlm_weight=0.1"], "does not support the auxiliary MLM loss"),
    (["train.matryoshka_dims=[64,64]"], "distinct positive sizes"),
    (["train.matryoshka_dims=[64,32]", "train.matryoshka_weights=[1]"], "1 values for 2 matryoshka_dims"),
    (["train.matryoshka_weights=[1]"], "without matryoshka_dims"),
])
def test_incompatible_training_options_fail_at_load_with_the_reason(tmp_path, overrides, message):
    from syncse_ray.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        _cfg(tmp_path, *overrides)


def test_judge_scores_are_read_with_the_triplets_and_required(tmp_path):
    rows = pd.DataFrame({"sent0": ["a", "b", "c"], "sent1": ["a2", "b2", "c2"], "hard_neg": ["a3", "b3", "c3"],
                         "pos_score": [0.9, None, 0.7], "neg_score": [0.4, 0.5, None]})
    rows.to_parquet(tmp_path / "t.parquet")
    table = read_training_table(tmp_path / "t.parquet", "supervised", 0, scores=True)
    assert table.column_names == ["sent0", "sent1", "hard_neg", "pos_score", "neg_score"]
    got = table.to_pandas().set_index("sent0")
    assert got.loc["a", "pos_score"] == 0.9 and np.isnan(got.loc["b", "pos_score"]) and np.isnan(
        got.loc["c", "neg_score"])  # a missing score is NaN (no reference), the row is kept
    assert read_training_table(tmp_path / "t.parquet", "supervised", 0).column_names == ["sent0", "sent1",
                                                                                         "hard_neg"]
    rows.drop(columns="neg_score").to_parquet(tmp_path / "u.parquet")
    with pytest.raises(TrainDataError, match="reference judge_scores needs .* pos_score and neg_score"):
        read_training_table(tmp_path / "u.parquet", "supervised", 0, scores=True)
