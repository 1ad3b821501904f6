"""Model cards (train/best, train/final) and dataset cards (synth/): built from small real folders, read back
with huggingface_hub, sentence-transformers and datasets. No Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from syncse_ray.config import load_config
from syncse_ray.io import write_json_atomic, write_table_atomic
from syncse_ray.synth.layout import CANDIDATE_SCHEMA, TRIPLET_DROPPED_SCHEMA, TRIPLET_SCHEMA

TRIPLETS = [("a man is playing a guitar .", "a man plays an instrument .", "a man is sleeping ."),
            ("two dogs run through the snow .", "animals are outside in the snow .", "two cats sit indoors ."),
            ("the market fell sharply today .", "stocks dropped a lot today .", "the market rose sharply today .")]
STS_SCORES = {"STS12": 61.25, "STS13": 70.5, "STS14": 66.0, "STS15": 75.75, "STS16": 72.0, "STSBenchmark": 74.5,
              "SICKRelatedness": 68.25}


def write_synth_folder(root: Path, cfg) -> Path:
    """A finished synth folder with the real layout: 3 kept triplets, 2 dropped rows, their candidates."""
    base = {"mode": "partial", "model": cfg.synth.model, "judge": f"embedding:{cfg.synth.judge.model}"}
    kept = [{"id": f"r{i}", "sent0": a, "sent1": p, "hard_neg": n, **base, "positive_instruction": "pos-paraphrase",
             "positive_exemplars": ["p1", "p2"], "positive_seed": 32 * i, "pos_score": 0.8, "neg_score": 0.5,
             "candidates": 8} for i, (a, p, n) in enumerate(TRIPLETS)]
    dropped = [{"id": "r3", "reason": "inverted", "sent0": "a cat .", **base},
               {"id": "r4", "reason": "duplicate", "sent0": "a man is playing a guitar .", **base}]
    candidates = [{"id": "r0", "kind": k, "index": j, "text": "x", "reason": None, "sim": 0.5, "llm": None,
                   "selected": j == 0} for k in ("positive", "hard_negative") for j in range(2)]
    write_table_atomic(root / "data" / "part-00000.parquet", kept, TRIPLET_SCHEMA)
    write_table_atomic(root / "dropped" / "part-00000.parquet", dropped, TRIPLET_DROPPED_SCHEMA)
    write_table_atomic(root / "candidates" / "part-00000.parquet", candidates, CANDIDATE_SCHEMA)
    write_table_atomic(root / "work" / "annotate" / "inputs" / "chunk-00000.parquet", [{"x": 1}],
                       pa.schema([("x", pa.int64())]))  # staged chunks: never part of the dataset
    annotate = {"kept": 3, "dropped": 2, "requests": 8, "candidates": 32, "prompt_tokens": 4000,
                "output_tokens": 900, "judge_prompt_tokens": 0, "judge_output_tokens": 0,
                "drop_reasons": {"duplicate": 1, "inverted": 1}, "candidate_reasons": {"selected": 6}}
    write_json_atomic(root / "manifest.json", {
        "stage": "synth", "mode": "partial", "model": cfg.synth.model, "model_path": "/models/smollm2",
        "fingerprint": "abc123", "config": cfg.model_dump(mode="json"), "requested": 5,
        "phases": {"annotate": annotate}, "prompt_tokens": 4000, "output_tokens": 900, "judge_tokens": 0,
        "wall_seconds": 12.5})
    write_json_atomic(root / "stats.json", {
        "sampled_rows": 3, "diversity": {"sent1": {"distinct_2": 0.9, "duplicate_rate": 0.0}},
        "judge": {"scored_rows": 3, "agreement": 1.0, "mean_pos": 0.8, "mean_neg": 0.5, "candidates_per_kept": 10.7,
                  "tokens_per_kept": 1633.0}})
    return root


def sts_results(model: str) -> dict:
    from syncse_ray.data.senteval import STS_TEST_TASKS
    from syncse_ray.eval.results import average_record

    records = [{"model": model, "protocol": "senteval-sts", "task": t, "split": "all", "metric": "spearman",
                "score": STS_SCORES[t], "n": 100, "data": "", "data_fingerprint": t, "time": "2026-12-01T00:00:00",
                "seconds": 1.0} for t in STS_TEST_TASKS]
    records.append(average_record(records, "senteval-sts", STS_TEST_TASKS))
    return {"model": model, "encoder": "SentenceTransformerEncoder", "data_dir": "", "started": "s",
            "finished": "2026-12-01T00:00:09", "seconds": 9.0, "skipped": [], "records": records}


@pytest.fixture(scope="module")
def run(tmp_path_factory, minilm_path):
    """A run folder: synth/ (with its card), train/best exported by the project's export code with a card."""
    from transformers import AutoTokenizer

    from syncse_ray.synth.card import write_dataset_card
    from syncse_ray.train.export import export_sentence_transformer
    from syncse_ray.train.facts import folder_facts, training_facts
    from syncse_ray.train.model import SimCSEModel

    run_dir = tmp_path_factory.mktemp("run")
    cfg = load_config(None, [f"run_dir={run_dir}", "synth.input=/data/seeds/snli/s1.test", "train.pooler=avg",
                             "train.num_workers=2", "train.batch_size=2", "train.matryoshka_dims=[384,64]",
                             "train.hard_negative_weight=0.5"])
    synth = write_synth_folder(run_dir / "synth", cfg)
    write_dataset_card(synth)
    table = pa.table({c: [t[i] for t in TRIPLETS] for i, c in enumerate(["sent0", "sent1", "hard_neg"])})
    history = [{"step": 1, "epoch": 1.0, "loss": 2.25, "lr": 5e-5, "samples_per_s": 3.0},
               {"step": 1, "stsb_dev": 70.1, "sickr_dev": 65.0, "dev_score": 67.55}]
    facts = training_facts(cfg, synth / "data", table, {"steps_per_epoch": 1, "total_steps": 1}, history, 0)
    facts["precision"] = "fp32"  # what the run's train.precision (auto) resolved to, as run_train records it
    model = SimCSEModel.from_pretrained(str(minilm_path), "avg").eval()
    best = run_dir / "train" / "best"
    export_sentence_transformer(model, AutoTokenizer.from_pretrained(str(minilm_path)), best,
                                metadata={"card": folder_facts(facts, history[1], "best", 1)})
    return run_dir, best


def test_model_card_at_export_states_the_training_run(run):
    from huggingface_hub import ModelCard

    run_dir, best = run
    card = ModelCard.load(best / "README.md")
    assert card.data.library_name == "sentence-transformers"
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert card.data.pipeline_tag == "sentence-similarity"
    assert "syncse-ray" in card.data.tags and card.data.eval_results is None  # no STS yet
    text = card.text
    for expected in ("supervised SimCSE", "temperature 0.05", "hard-negative weight 0.5",
                     "Matryoshka prefixes [384, 64]", "false negatives: not handled", "batch size 2 × 2 worker(s)",
                     "= 4 rows a step", "lr 5e-05", "max length 32", "precision fp32 (auto)",
                     "generator LLM `bundled:smollm2-135m-instruct`", "**Kept** 3 of 5 rows", "1 `inverted`",
                     str(run_dir / "synth" / "data"), "STS-B dev 70.10", "Not evaluated yet", "syncse pipeline",
                     "MatryoshkaLoss", "Training Logs", "a man is playing a guitar"):
        assert expected in text, expected


def test_model_card_after_eval_has_the_sts_table_and_model_index(run):
    from huggingface_hub import ModelCard
    from sentence_transformers import SentenceTransformer

    from syncse_ray.eval.results import write_results
    from syncse_ray.train.card import update_model_card

    run_dir, best = run
    eval_dir = run_dir / "eval"
    write_results(sts_results(str(best)), eval_dir)
    base = sts_results("bundled:all-minilm-l6-v2")
    base["records"][0]["score"] = 11.11
    write_results(base, eval_dir / "base")
    assert update_model_card(best, eval_dir) == best / "README.md"

    card = ModelCard.load(best / "README.md")
    scores = {r.dataset_name: r.metric_value for r in card.data.eval_results}
    assert {r.metric_type for r in card.data.eval_results} == {"spearman_cosine"}
    assert {r.task_type for r in card.data.eval_results} == {"semantic-similarity"}
    assert scores["STS12"] == 61.25 and scores["SICK R"] == 68.25
    assert scores["STS avg"] == pytest.approx(sum(STS_SCORES.values()) / 7, abs=0.01)
    text = card.text
    assert "| model | STS12 | STS13 | STS14 | STS15 | STS16 | STS-B | SICK-R | Avg. |" in text
    assert "| 11.11 |" in text  # the encoder before training, beside the trained one
    assert "Not evaluated yet" not in text
    model = SentenceTransformer(str(best), device="cpu")
    assert model.encode(["a sentence ."]).shape == (1, 384)
    assert model._model_card_text.startswith("---")  # sentence-transformers keeps our card on a re-save

    before = (best / "README.md").stat().st_mtime_ns
    assert update_model_card(best, eval_dir) == best / "README.md"  # same results: nothing rewritten
    assert (best / "README.md").stat().st_mtime_ns == before


def test_update_model_card_leaves_other_models_alone(tmp_path):
    from syncse_ray.eval.results import write_results
    from syncse_ray.train.card import update_model_card

    write_results(sts_results("x"), tmp_path / "eval")
    (tmp_path / "model").mkdir()
    assert update_model_card(tmp_path / "model", tmp_path / "eval") is None
    assert not (tmp_path / "model" / "README.md").exists()


def test_dataset_card_front_matter_loads_with_datasets(run):
    import datasets
    from huggingface_hub import DatasetCard

    synth = run[0] / "synth"
    card = DatasetCard.load(synth / "README.md")
    assert card.data.license == "cc-by-sa-4.0"  # SNLI anchors
    configs = {c["config_name"]: c for c in card.data.configs}
    assert set(configs) == {"default", "dropped", "candidates"}
    assert configs["default"]["data_files"] == [{"split": "train", "path": "data/*.parquet"}]

    triplets = datasets.load_dataset(str(synth), split="train")
    assert triplets.num_rows == 3 and triplets[0]["sent0"] == TRIPLETS[0][0]
    assert set(TRIPLET_SCHEMA.names) == set(triplets.column_names)
    assert datasets.load_dataset(str(synth), "dropped", split="train").num_rows == 2
    files = datasets.load_dataset("parquet", data_files=str(synth / "candidates" / "*.parquet"), split="train")
    assert files.num_rows == 4


def test_dataset_card_body_documents_columns_counts_prompts(run):
    from syncse_ray.synth.prompts import load_prompt_pack

    text = (run[0] / "synth" / "README.md").read_text(encoding="utf-8")
    for expected in ("**3 kept** of 5 rows", "| `inverted` | 1 |", "| `duplicate` | 1 |",
                     "`bundled:smollm2-135m-instruct`", "`embedding` with `bundled:all-minilm-l6-v2`", "margin 0.2",
                     "| `hard_neg` | `string` | the hard negative the LLM wrote", "| `selected` | `bool` |",
                     "SNLI (Bowman et al. 2015): CC BY-SA 4.0", "load_dataset("):
        assert expected in text, expected
    pack = load_prompt_pack(None)
    for kind in ("positive", "hard_negative"):
        assert all(i.text in text for i in pack.instructions[kind])
    assert "scratch" not in [line.strip("*") for line in text.splitlines()]  # partial run: no scratch prompts


@pytest.mark.parametrize(("mode", "path", "licence"), [("partial", "/d/seeds/wiki1m_sample.txt", "cc-by-sa-3.0"),
                                                       ("partial", "/d/mine.txt", "unknown"),
                                                       ("scratch", None, "unknown")])
def test_seed_licence(mode, path, licence):
    from syncse_ray.synth.card import seed_licence

    assert seed_licence(mode, path)[0] == licence


def test_base_model_hub_id(tmp_path):
    from syncse_ray.train.facts import base_model_hub_id

    assert base_model_hub_id("bundled:smollm2-135m-instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert base_model_hub_id("roberta-base") == "roberta-base"
    assert base_model_hub_id(str(tmp_path)) is None
    assert json.loads(json.dumps(base_model_hub_id("FacebookAI/roberta-large"))) == "FacebookAI/roberta-large"
