"""Peak memory and step time of one training step with and without GradCache (`train.mini_batch_size`).

Each case runs in a fresh process (peak RSS is per process): the bundled encoder (all-MiniLM-L6-v2, cls pooler,
fp32), SNLI dev triplets (anchor, entailment, contradiction), max length 32, one optimizer step of the training
loop's engine (DDP engine, one process) after one warm-up step, at each global batch size, plain and with
GradCache mini-batches.

    SYNCSE_DATA_DIR=../shared/data .venv/bin/python benchmarks/grad_cache_memory.py [--batches 128,256,512]
        [--mini-batch 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def one_case(batch: int, mini: int | None, threads: int) -> dict:
    """In this process: one warm-up step, then one timed step; peak RSS of the process (MiB)."""
    import resource

    import torch
    from transformers import AutoTokenizer

    from syncse_ray.config import TrainConfig
    from syncse_ray.config.root import default_data_dir
    from syncse_ray.models.pooling import prepare_tokenizer
    from syncse_ray.models.references import resolve_model
    from syncse_ray.train.data import snli_triplets, tokenize_views
    from syncse_ray.train.engines import build_engine
    from syncse_ray.train.grad_cache import GradCache
    from syncse_ray.train.losses import SimCSELoss
    from syncse_ray.train.model import SimCSEModel

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    path = resolve_model("bundled:all-minilm-l6-v2")
    t = TrainConfig(batch_size=batch, mini_batch_size=mini, backend="ddp", lr=1e-5)
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(path), t.pooler)
    engine = build_engine(SimCSEModel.from_pretrained(path, t.pooler), t, warmup_steps=0, total_steps=10)
    table = snli_triplets(default_data_dir() / "seeds" / "snli" / "labels.dev").slice(0, batch).to_pydict()
    texts = [[str(s) for s in table[c]] for c in ("sent0", "sent1", "hard_neg")]
    loss_fn = SimCSELoss(t.temperature)
    cache = GradCache(lambda inputs: engine(**inputs)[0], loss_fn) if mini else None

    def step() -> float:
        if cache is None:
            vectors, _ = engine(**tokenize_views(texts, tokenizer, t.max_seq_length))
            loss = loss_fn(*vectors.view(3, batch, -1))
            engine.backward_and_step(loss)
        else:
            chunks = [tokenize_views([v[i:i + mini] for v in texts], tokenizer, t.max_seq_length)
                      for i in range(0, batch, mini)]
            loss = cache.loss(chunks, 3)
            assert cache.replay(engine.backward_and_step)
        return loss.item()

    step()
    started = time.perf_counter()
    loss = step()
    seconds = time.perf_counter() - started
    return {"batch": batch, "mini_batch": mini, "seconds": seconds, "loss": loss,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", default="128,256,512")
    parser.add_argument("--mini-batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: one case in this process
    args = parser.parse_args()
    if args.case:
        batch, mini = json.loads(args.case)
        print(json.dumps(one_case(batch, mini, args.threads)))
        return
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        for mini in (None, args.mini_batch):
            out = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--case",
                                  json.dumps([batch, mini])], capture_output=True, text=True, check=True,
                                 cwd=Path(__file__).resolve().parents[1])
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"[grad-cache] {rows[-1]}", flush=True)
    print(f"\nload average {os.getloadavg()}\n")
    print("| global batch | plain: peak RSS MiB | plain: step s | GradCache: peak RSS MiB | GradCache: step s | "
          "time ratio | loss plain / GradCache |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for plain, cached in zip(rows[::2], rows[1::2]):
        print(f"| {plain['batch']} | {plain['peak_rss_mib']:.0f} | {plain['seconds']:.1f} | "
              f"{cached['peak_rss_mib']:.0f} | {cached['seconds']:.1f} | {cached['seconds'] / plain['seconds']:.2f} | "
              f"{plain['loss']:.4f} / {cached['loss']:.4f} |")


if __name__ == "__main__":
    main()
