"""The score cache (syncse_ray/eval/score_cache.py): keys, model fingerprints, the store, and run_eval with it.

No model is loaded: run_eval gets a fake encoder through a patched `load_encoder`, which also counts loads.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from syncse_ray.eval import runner
from syncse_ray.eval.score_cache import (
    SCORE_CACHE_VERSION,
    SCORING_MODULES,
    ScoreCache,
    cacheable_reference,
    code_fingerprint,
    key_digest,
    make_identity,
    model_fingerprint,
    score_key,
)

PAIRS = [
    ("a man is playing a guitar .", "a man plays the guitar .", 4.8),
    ("a woman is slicing an onion .", "a woman cuts an onion .", 4.4),
    ("two dogs run across a field .", "dogs are running on the grass .", 3.8),
    ("a child is reading a book .", "a kid reads a novel in bed .", 3.0),
    ("the train arrived late .", "the bus was on time .", 1.6),
    ("a cat sleeps on the sofa .", "the stock market fell sharply .", 0.2),
]
TASKS = ["sts:STSBenchmark", "sts:SICKRelatedness"]


def identity(**changes):
    values = {"model": "m" * 32, "pooler": "avg", "precision": "fp32", "device": "cpu", "max_seq_length": 32,
              "batch_size": 64, "code": "c" * 16, "libraries": {"torch": "2.0"}}
    return make_identity(**{**values, **changes})


def digest(ident=None, **task):
    task = {"protocol": "senteval-sts", "task": "STSBenchmark", "data_fingerprint": "d" * 16, **task}
    return key_digest(score_key(ident or identity(), **task))


# -- keys ----------------------------------------------------------------------------------------------------

def test_the_same_inputs_are_the_same_key():
    assert digest() == digest(identity())
    # dict order does not matter: the digest is over canonical JSON
    assert key_digest({"a": 1, "b": 2}) == key_digest({"b": 2, "a": 1})


@pytest.mark.parametrize("change", [{"pooler": "cls_before_pooler"}, {"pooler": None}, {"precision": "bf16"},
                                    {"model": "n" * 32}, {"device": "cuda"}, {"max_seq_length": None},
                                    {"batch_size": 16},  # bf16 rounds by the batch's shape (module docstring)
                                    {"code": "e" * 16}, {"libraries": {"torch": "2.1"}},
                                    {"version": SCORE_CACHE_VERSION + 1}])
def test_a_changed_encoder_setting_is_another_key(change):
    assert digest(identity(**change)) != digest()


@pytest.mark.parametrize("change", [{"data_fingerprint": "e" * 16}, {"task": "SICKRelatedness"},
                                    {"protocol": "senteval-sts-dev"}])
def test_a_changed_task_or_data_file_is_another_key(change):
    assert digest(**change) != digest()


def test_transfer_keys_hold_the_folds_and_mteb_is_never_cached():
    transfer = {"protocol": "senteval-transfer", "task": "MR"}
    assert digest(**transfer, kfold=10) != digest(**transfer, kfold=5)
    assert "kfold" not in score_key(identity(), protocol="senteval-sts", task="STSBenchmark",
                                    data_fingerprint="d", kfold=10)
    with pytest.raises(ValueError, match="not cached"):
        score_key(identity(), protocol="mteb-hub", task="STSBenchmark", data_fingerprint="d")


def test_the_code_fingerprint_follows_the_scoring_modules(tmp_path):
    for name in SCORING_MODULES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x = 1\n")
    before = code_fingerprint(tmp_path)
    (tmp_path / "models/pooling.py").write_text("x = 2\n")
    assert code_fingerprint(tmp_path) != before
    assert len(code_fingerprint()) == 16  # the installed package's own modules


def test_which_references_syncse_eval_caches_by_default(tmp_path):
    assert cacheable_reference("bundled:all-minilm-l6-v2")
    assert cacheable_reference("princeton-nlp/sup-simcse-roberta-base")
    assert not cacheable_reference(str(tmp_path))  # a local folder: a trained model, scored once
    assert not cacheable_reference("http://localhost:8000/v1")
    assert not cacheable_reference("./runs/x/train/best")


# -- model fingerprints ----------------------------------------------------------------------------------------

def write_model(folder: Path, weights: bytes = b"\x01" * 64) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "fake", "hidden_size": 8}')
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    return folder


def test_model_fingerprint_is_the_content_not_the_path_or_time(tmp_path):
    first = model_fingerprint(write_model(tmp_path / "a"))
    assert model_fingerprint(write_model(tmp_path / "b")) == first  # another folder, the same files
    weights = tmp_path / "a" / "model.safetensors"
    os.utime(weights, (1, 1))
    assert model_fingerprint(tmp_path / "a") == first  # a new mtime only
    (tmp_path / "a" / "README.md").write_text("model card with an STS table")
    (tmp_path / "a" / ".gitattributes").write_text("*.safetensors filter=lfs")
    assert model_fingerprint(tmp_path / "a") == first  # model cards and hidden files do not count


@pytest.mark.parametrize("edit", ["weights", "pooling", "new file"])
def test_model_fingerprint_changes_with_any_file_that_loads(tmp_path, edit):
    folder = write_model(tmp_path / "m")
    before = model_fingerprint(folder)
    if edit == "weights":  # one byte, the same size and a restored mtime: still another model
        stat = (folder / "model.safetensors").stat()
        (folder / "model.safetensors").write_bytes(b"\x01" * 63 + b"\x02")
        os.utime(folder / "model.safetensors", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    elif edit == "pooling":
        (folder / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    else:
        (folder / "tokenizer.json").write_text("{}")
    assert model_fingerprint(folder) != before


def test_model_fingerprint_of_an_empty_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model files"):
        model_fingerprint(tmp_path)


# -- the store -------------------------------------------------------------------------------------------------

def test_store_round_trip_atomic_and_bad_entries_are_misses(tmp_path, caplog):
    cache = ScoreCache.in_cache_dir(tmp_path)
    key = score_key(identity(), protocol="senteval-sts", task="STSBenchmark", data_fingerprint="d")
    assert cache.get(key) is None
    path = cache.put(key, {"task": "STSBenchmark", "score": 71.5}, "TransformersEncoder")
    assert path.parent.parent.parent == tmp_path / "scores" and path.name == f"{key_digest(key)}.json"
    assert cache.get(key)["record"]["score"] == 71.5
    assert cache.get(key)["encoder"] == "TransformersEncoder"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind

    other = {**key, "task": "SICKRelatedness"}
    cache.path(other).parent.mkdir(parents=True, exist_ok=True)
    path.rename(cache.path(other))  # an entry whose stored key is not the one asked for (a hash collision)
    assert cache.get(other) is None
    cache.path(key).write_text('{"key": ')  # a torn or corrupt file
    assert cache.get(key) is None
    assert "ignoring unreadable" in caplog.text


# -- run_eval with the cache -----------------------------------------------------------------------------------

def write_data(root: Path, sick_gold_shift: float = 0.0) -> Path:
    sts = root / "senteval" / "STS" / "STSBenchmark"
    sts.mkdir(parents=True, exist_ok=True)
    (sts / "sts-test.csv").write_text("".join(
        f"main-captions\tMSRvid\t2012test\t{i:04d}\t{g}\t{a}\t{b}\n" for i, (a, b, g) in enumerate(PAIRS)))
    sick = root / "senteval" / "SICK"
    sick.mkdir(parents=True, exist_ok=True)
    gold = [g if i else g + sick_gold_shift for i, (*_, g) in enumerate(PAIRS)]
    (sick / "SICK_test_annotated.txt").write_text(
        "pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment\n"
        + "".join(f"{i}\t{a}\t{b}\t{g}\tNEUTRAL\n" for i, ((a, b, _), g) in enumerate(zip(PAIRS, gold))))
    return root


class FakeEncoder:
    """Vectors from the words' hashes: deterministic, and similar for sentences that share words."""

    def __init__(self, name: str):
        self.name = name

    def encode(self, sentences, *, show_progress=True):
        out = np.zeros((len(sentences), 64), np.float32)
        for row, sentence in enumerate(sentences):
            for word in sentence.split():
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % 64] += 1.0
        return out


@pytest.fixture
def loads(monkeypatch):
    calls: list[dict] = []

    def fake_load_encoder(reference, **kwargs):
        calls.append({"reference": reference, **kwargs})
        return FakeEncoder(reference)

    monkeypatch.setattr(runner, "load_encoder", fake_load_encoder)
    return calls


def test_a_second_run_reads_every_score_from_the_cache_without_loading_the_model(tmp_path, loads):
    model, data, cache = str(write_model(tmp_path / "model")), write_data(tmp_path / "data"), tmp_path / "cache"
    kwargs = {"pooler": "avg", "cache_dir": cache, "show_progress": False, "score_cache": True}

    first = runner.run_eval(model, TASKS, data, tmp_path / "run1", **kwargs)
    assert len(loads) == 1 and not first["cached"] and first["cached_tasks"] == []
    assert not any(r.get("cached") for r in first["records"])
    assert len(list((cache / "scores").rglob("*.json"))) == 2  # one entry a task

    progress: list[tuple[int, int, str]] = []
    second = runner.run_eval(model, TASKS, data, tmp_path / "run2", **kwargs,
                             progress=lambda *a: progress.append(a))
    assert len(loads) == 1  # not loaded again
    assert second["cached"] and second["cached_tasks"] == ["STSBenchmark", "SICKRelatedness"]
    assert second["encoder"] == "FakeEncoder"
    assert [r["score"] for r in second["records"]] == [r["score"] for r in first["records"]]
    assert all(r["cached"] and r["model"] == model for r in second["records"])
    assert [p[0] for p in progress] == [0, 1, 2]
    saved = json.loads((tmp_path / "run2" / "results.json").read_text())
    assert saved["cached"] and saved["records"] == second["records"]


def test_changed_data_pooler_precision_batch_size_or_weights_are_scored_again(tmp_path, loads):
    model, data, cache = write_model(tmp_path / "model"), write_data(tmp_path / "data"), tmp_path / "cache"
    kwargs = {"cache_dir": cache, "show_progress": False, "score_cache": True}
    runner.run_eval(str(model), TASKS, data, pooler="avg", precision="fp32", **kwargs)
    assert len(loads) == 1

    write_data(data, sick_gold_shift=0.5)  # SICK's file changed, STS-B's did not
    changed = runner.run_eval(str(model), TASKS, data, pooler="avg", precision="fp32", **kwargs)
    assert len(loads) == 2 and changed["cached_tasks"] == ["STSBenchmark"] and not changed["cached"]
    by_task = {r["task"]: r for r in changed["records"]}
    assert by_task["STSBenchmark"]["cached"] and "cached" not in by_task["SICKRelatedness"]

    runner.run_eval(str(model), TASKS, data, pooler="cls_before_pooler", precision="fp32", **kwargs)
    runner.run_eval(str(model), TASKS, data, pooler="avg", precision="bf16", **kwargs)
    runner.run_eval(str(model), TASKS, data, pooler="avg", precision="fp32", batch_size=16, **kwargs)
    (model / "model.safetensors").write_bytes(b"\x03" * 64)
    weights = runner.run_eval(str(model), TASKS, data, pooler="avg", precision="fp32", **kwargs)
    assert len(loads) == 6 and weights["cached_tasks"] == []
    assert loads[-1]["precision"] == "fp32" and loads[-1]["pooler"] == "avg"


def test_without_the_cache_flag_nothing_is_read_or_written(tmp_path, loads):
    model, data, cache = str(write_model(tmp_path / "model")), write_data(tmp_path / "data"), tmp_path / "cache"
    for _ in range(2):
        results = runner.run_eval(model, TASKS, data, pooler="avg", cache_dir=cache, show_progress=False)
        assert not results["cached"]
    assert len(loads) == 2 and not (cache / "scores").exists()


# -- what the run shows ----------------------------------------------------------------------------------------

def test_report_and_console_summary_say_the_base_scores_were_cached(tmp_path):
    from syncse_ray.config import load_config
    from syncse_ray.pipeline.report import write_report
    from syncse_ray.pipeline.run import _sts_summary

    cfg = load_config(None, [f"run_dir={tmp_path}", "eval.compare_base=true"])

    def results(model, score, **extra):
        return {"model": model, "seconds": 1.0, **extra, "records": [
            {"model": model, "protocol": "senteval-sts", "task": "STSBenchmark", "split": "test", "score": score}]}

    (tmp_path / "eval" / "base").mkdir(parents=True)
    (tmp_path / "eval" / "base" / "results.json").write_text(json.dumps(results("bundled:x", 40.0, cached=True)))
    (tmp_path / "eval" / "results.json").write_text(json.dumps(results(str(tmp_path / "best"), 50.0)))

    text = write_report(cfg, {"stages": {}}).read_text()
    assert "| `before training (cached scores): bundled:x` |" in text
    assert "come from the score cache" in text
    summary = _sts_summary(tmp_path / "eval" / "results.json")
    assert summary == "STSBenchmark 40.00 -> 50.00 (before training: cached scores)"
