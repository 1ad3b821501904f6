"""Real training runs on CPU: Ray Train + DeepSpeed ZeRO-2 with 2 workers on SNLI gold triplets, a worker process
SIGKILLed mid-run that Ray recovers from, relaunching a finished run, and a non-finite loss."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _checkpoints import registered_checkpoint_step
from _processes import own_live_processes

from syncse_ray.config import load_config

pytestmark = pytest.mark.slow


def snli_triplets(data_dir: Path, n: int) -> pd.DataFrame:
    """n gold triplets from SNLI dev (premise, entailment, contradiction) plus a provenance column to ignore."""
    from syncse_ray.train.data import snli_triplets as read_split

    table = read_split(data_dir / "seeds" / "snli" / "labels.dev")
    assert table.num_rows >= n
    return table.slice(0, n).to_pandas().assign(provenance="snli-dev")


def tiny_config(tmp: Path, data: Path, data_dir: Path, *overrides: str):
    return load_config(None, [
        f"run_dir={tmp}", f"data_dir={data_dir}", f"train.data={data}", "train.batch_size=16",
        "train.max_seq_length=24", "train.dev_max_pairs=100", "train.log_every=1", *overrides])


def _losses(result) -> list[float]:
    return [r["loss"] for r in map(json.loads, result.metrics_path.read_text().splitlines()) if "loss" in r]


def anchor_copies(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows with each hard negative replaced by a copy of its anchor: the falsest negative there is. A
    false-negative option that acts takes it out of the softmax (mask) or lowers its logit to about 0 (decay),
    and the loss stays what the SNLI positives give; one that is ignored leaves each anchor's copy scoring above
    its positive, and the loss is far higher. Measured with the loss module on batches of 32 of these rows from
    MiniLM at initialisation (4 MLP initialisations, 17 draws of rows and dropout): plain SimCSE 2.70-3.11, with
    the judge-score options 1.07-1.46; summed over the Matryoshka prefixes [1, 0.5, 0.25], plain 4.86-5.48
    and guide-masked 2.07-2.70 (`test_train_loss.py` checks the mechanism on synthetic vectors)."""
    return rows.assign(hard_neg=rows["sent0"])


def _train_worker_pids() -> list[int]:
    """Pids of this session's live Ray Train worker processes."""
    return own_live_processes("RayTrainWorker")


def _sigkill_a_worker_after(progress_file: Path, step: int, checkpoint: int, killed: dict) -> None:
    """Once rank 0 reports `step` and the controller has registered the checkpoint of step `checkpoint`
    (`_checkpoints.py`), SIGKILL one training worker process, chosen at random: a real process death, as on a
    cluster, not an exception raised in the loop."""
    import os
    import random
    import signal
    import time

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if (json.loads(progress_file.read_text()).get("step", 0) >= step
                    and registered_checkpoint_step(progress_file.parent) >= checkpoint):
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    else:
        return
    pids = _train_worker_pids()
    if pids:
        killed["pid"] = random.choice(pids)
        killed["step"] = json.loads(progress_file.read_text())["step"]
        os.kill(killed["pid"], signal.SIGKILL)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir, ray_local):
    """2 workers × batch 16, DeepSpeed ZeRO-2, 12 steps (one epoch of 400 triplets), dev + checkpoint every
    5 steps; once step 6 is reached one worker process is SIGKILLed and Ray Train restarts the worker group
    from the step-5 checkpoint (train.max_failures=1)."""
    import random
    import threading

    from syncse_ray.train import run_train
    from syncse_ray.train.trainer import PROGRESS_FILE

    tmp = tmp_path_factory.mktemp("train")
    snli_triplets(data_dir, 400).to_parquet(tmp / "triplets.parquet")
    cfg = tiny_config(tmp, tmp / "triplets.parquet", data_dir, "train.num_workers=2", "train.backend=deepspeed",
                      "train.deepspeed.zero_stage=2", "train.eval_steps=5", "train.max_failures=1",
                      "train.num_checkpoints_to_keep=1")
    killed: dict = {}
    killer = threading.Thread(target=_sigkill_a_worker_after, daemon=True,
                              args=(cfg.stage_dir("train") / PROGRESS_FILE, random.choice([6, 7, 8]), 5, killed))
    killer.start()
    result = run_train(cfg)
    killer.join(timeout=5)
    return cfg, result, killed


def test_two_worker_deepspeed_run_trains_recovers_and_exports(trained):
    cfg, result, killed = trained
    assert result.steps == 12
    assert 6 <= killed.get("step", 0) < 10, killed  # a worker process was SIGKILLed between checkpoints ...
    assert result.resumed_from_step == 5  # ... and Ray restarted the group from the step-5 checkpoint
    assert killed["pid"] not in _train_worker_pids()

    log = [json.loads(line) for line in result.metrics_path.read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert [r["step"] for r in log if "loss" in r] == list(range(1, 13))  # no step lost or repeated
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.1, losses
    dev = [r for r in log if "dev_score" in r]
    assert [r["step"] for r in dev] == [5, 10, 12]
    assert all(0 < r["stsb_dev"] <= 100 and 0 < r["sickr_dev"] <= 100 for r in dev)
    assert result.best_score == max(r["dev_score"] for r in dev)
    assert (cfg.stage_dir("train") / "stage.json").is_file()


@pytest.mark.parametrize("which", ["best", "final"])
def test_export_loads_with_sentence_transformers_and_matches_training_model(trained, which):
    from ray.train import Checkpoint
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    from syncse_ray.models.references import resolve_model
    from syncse_ray.train.trainer import load_checkpoint_model

    cfg, result, _ = trained
    folder = result.best_dir if which == "best" else result.final_dir
    meta = json.loads((folder / "syncse_train.json").read_text())
    model_path = str(resolve_model(cfg.train.model))
    reference = load_checkpoint_model(Checkpoint.from_directory(meta["checkpoint"]), model_path, "cls", False)
    sentences = ["a man is playing a guitar .", "two dogs run through the snow .", "the market fell sharply"]
    expected = reference.encode(sentences, AutoTokenizer.from_pretrained(model_path), 24)
    got = SentenceTransformer(str(folder), device="cpu").encode(sentences)
    cos = (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    assert cos.min() >= 0.9999
    assert [type(m).__name__ for m in SentenceTransformer(str(folder), device="cpu")] == [
        "Transformer", "Pooling", "Dense"]


def test_relaunching_a_finished_run_resumes_at_its_last_step(trained, tmp_path):
    """Without the completion marker, a relaunch goes through Ray Train again: it restores the latest
    checkpoint (step 12 of 12), trains nothing, and reports the same steps and log. It relaunches a copy of the
    run folder (Ray Train's storage names checkpoints relative to it), so the shared run stays as every other
    test reads it, in any order and whether or not this test passes."""
    import shutil

    from syncse_ray.train import run_train

    cfg, first, _ = trained
    shared = cfg.stage_dir("train")
    untouched = {p: p.read_bytes() for p in sorted(shared.glob("*.json*")) if p.is_file()}
    assert shared / "stage.json" in untouched
    copy = tmp_path / "run"
    shutil.copytree(shared, copy / "train")
    (copy / "train" / "stage.json").unlink()
    again = run_train(cfg.model_copy(update={"run_dir": copy}))
    assert again.output_dir == (copy / "train").resolve() and (copy / "train" / "stage.json").is_file()
    assert again.resumed_from_step == 12 and again.steps == 12
    assert again.metrics_path.read_text() == first.metrics_path.read_text()
    assert again.best_score == pytest.approx(first.best_score)
    assert {p: p.read_bytes() for p in untouched} == untouched  # the shared run as it was


def test_a_different_config_cannot_reuse_the_output_folder(trained):
    from syncse_ray.runtime.stage_marker import ClaimError
    from syncse_ray.train import run_train

    cfg, _, _ = trained
    with pytest.raises(ClaimError, match="holds a finished training output of a different config"):
        run_train(cfg.model_copy(update={"train": cfg.train.model_copy(update={"lr": 1e-5})}))


def test_non_finite_loss_stops_with_a_clear_message(tmp_path, data_dir, ray_local):
    """τ = 1e-40 makes cos/τ overflow to inf, so the very first loss is NaN: DDP backend, 1 worker."""
    from syncse_ray.train import TrainError, run_train

    snli_triplets(data_dir, 64).to_parquet(tmp_path / "t.parquet")
    cfg = tiny_config(tmp_path, tmp_path / "t.parquet", data_dir, "train.backend=ddp", "train.temperature=1e-40",
                      "train.max_steps=3")
    with pytest.raises(TrainError, match=r"non-finite loss \(nan\) at step 1.*no checkpoint had been written"):
        run_train(cfg)


def test_relaunching_a_killed_ddp_run_resumes_from_its_checkpoint(tmp_path, data_dir, ray_local):
    """DDP backend, 1 worker, no restarts allowed: the fault after step 3 fails the run (checkpoint at step 2
    kept); relaunching the same config resumes at step 2 and finishes all 4 steps."""
    from syncse_ray.train import TrainError, run_train

    snli_triplets(data_dir, 64).to_parquet(tmp_path / "t.parquet")
    cfg = tiny_config(tmp_path, tmp_path / "t.parquet", data_dir, "train.backend=ddp", "train.max_steps=4",
                      "train.eval_steps=2", "train.fault_at_step=3", "train.max_failures=0")
    with pytest.raises(TrainError, match=r"(?s)resumes from the latest checkpoint.*injected fault at step 3"):
        run_train(cfg)
    result = run_train(cfg)
    assert (result.resumed_from_step, result.steps) == (2, 4)
    log = [json.loads(line) for line in result.metrics_path.read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4]
    assert [r["step"] for r in log if "dev_score" in r] == [2, 4]


def test_guide_masking_gaussian_decay_matryoshka_and_grad_cache_train_for_real(tmp_path, data_dir, ray_local,
                                                                              free_port):
    """2 DDP workers with GradCache mini-batches of 4, MiniLM guiding MiniLM: masking (GISTEmbed ratio and a
    threshold), GCSE decay over every negative and Matryoshka prefixes train, log finite losses and export a
    model of the full size; served with `dimensions`, it answers the offline vectors cut and re-normalised.
    The hard negatives are copies of their anchors (`anchor_copies`): the guide scores each 1.0, above the 0.9
    threshold and the anchor's positive, so the masking takes them out and the loss stays low."""
    from sentence_transformers import SentenceTransformer

    from syncse_ray.train import run_train

    anchor_copies(snli_triplets(data_dir, 64)).to_parquet(tmp_path / "triplets.parquet")
    cfg = tiny_config(tmp_path, tmp_path / "triplets.parquet", data_dir, "train.num_workers=2",
                      "train.backend=ddp", "train.max_steps=3", "train.eval_steps=3", "train.mini_batch_size=4",
                      "train.false_negatives.guide=bundled:all-minilm-l6-v2",
                      "train.false_negatives.mask_ratio=1.0", "train.false_negatives.mask_threshold=0.9",
                      "train.false_negatives.decay_sigma=4.0", "train.false_negatives.decay_scope=all",
                      "train.matryoshka_dims=[384,128,32]", "train.matryoshka_weights=[1,0.5,0.25]")
    result = run_train(cfg)
    losses = _losses(result)
    assert result.steps == 3 and len(losses) == 3 and all(np.isfinite(losses))
    assert max(losses) < 3.4, losses  # the copies left (a real run: 1.72, 2.03, 1.65; ignored: 4.52, 4.28, 4.14)
    texts = ["A man is playing a guitar.", "Two dogs run on the beach.", "short"]
    offline = SentenceTransformer(str(result.best_dir)).encode(texts)
    assert offline.shape == (3, 384)

    import httpx
    from ray import serve

    from syncse_ray.serve.app import build_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(build_app(model=str(result.best_dir), num_replicas=1, num_cpus_per_replica=0.5),
                  name="matryoshka", route_prefix="/")
        for dims in (128, 32):
            body = httpx.post(f"http://127.0.0.1:{port}/v1/embeddings", json={"input": texts, "dimensions": dims},
                              timeout=60).json()
            served = np.array([d["embedding"] for d in body["data"]])
            cut = offline[:, :dims] / np.linalg.norm(offline[:, :dims], axis=1, keepdims=True)
            np.testing.assert_allclose(served, cut, atol=1e-5)
    finally:
        serve.shutdown()


def test_judge_scores_as_the_false_negative_reference_train_for_real(tmp_path, data_dir, ray_local):
    """2 DeepSpeed workers with the data's judge scores (no guide model). The hard negatives are copies of their
    anchors (`anchor_copies`), each scored 1.0 by the judge: in the even rows the positive scores 0.9, so the
    copy scores above it and leaves the softmax (mask_ratio 1.0); in the odd rows the positive too scores 1.0,
    the copy stays and GCSE's decay lowers its logit s (at most 1/τ = 20) by s·exp(−(s − 20)²/(2·4²)), to near 0.
    Row 0 has no scores and is trained on as it is. Finite losses, as low as the option makes them."""
    from syncse_ray.train import run_train

    rows = anchor_copies(snli_triplets(data_dir, 64))
    rows = rows.assign(pos_score=np.where(np.arange(len(rows)) % 2, 1.0, 0.9), neg_score=1.0)
    rows.loc[0, ["pos_score", "neg_score"]] = None
    rows.to_parquet(tmp_path / "triplets.parquet")
    cfg = tiny_config(tmp_path, tmp_path / "triplets.parquet", data_dir, "train.num_workers=2",
                      "train.max_steps=2", "train.eval_steps=2", "train.mini_batch_size=8",
                      "train.false_negatives.reference=judge_scores", "train.false_negatives.mask_ratio=1.0",
                      "train.false_negatives.decay_sigma=4.0")
    result = run_train(cfg)
    losses = _losses(result)
    assert result.steps == 2 and len(losses) == 2 and all(np.isfinite(losses))
    assert max(losses) < 2.0, losses  # the copies left (a real run: 1.14, 1.16; ignored: 2.97, 2.73)
