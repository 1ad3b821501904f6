"""Training throughput: one Ray Train + DeepSpeed worker against a bare PyTorch loop, and 2 workers against 1.

All three runs train the same SimCSEModel (default: bundled all-MiniLM-L6-v2, cls pooler) on the same SNLI gold
triplets with the same per-worker batch, max length, precision (fp32) and CPU threads per worker. Throughput is
triplets (rows) per second over the steps after `--warmup`, wall time between optimizer steps (data,
tokenization, forward, backward, optimizer; no dev evaluation):

    ray_vs_bare    = samples/s (Ray Train + DeepSpeed ZeRO-2, 1 worker) / samples/s (bare loop)   goal ≥ 0.9
                     (the bare loop runs before and after the Ray runs; their mean is used)
    two_vs_one     = samples/s (2 workers, global batch 2B) / samples/s (1 worker, batch B)

    SYNCSE_DATA_DIR=../shared/data .venv/bin/python benchmarks/train_throughput.py [--steps 12] [--out f.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def bare_loop(model_path: Path, table, batch: int, max_len: int, steps: int, warmup: int, threads: int) -> float:
    """The same work as one Ray Train worker, in a plain PyTorch loop in this process."""
    import torch
    from transformers import AutoTokenizer

    from syncse_ray.train.data import tokenize_views, views
    from syncse_ray.train.engines import OptimSettings, adamw
    from syncse_ray.train.losses import SimCSELoss
    from syncse_ray.train.model import SimCSEModel

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = SimCSEModel.from_pretrained(model_path, "cls").train()
    optimizer = adamw(model, OptimSettings(lr=5e-5, weight_decay=0.0, warmup_steps=0, total_steps=steps,
                                           gradient_accumulation_steps=1, gradient_clipping=1.0,
                                           precision="fp32", micro_batch_size=batch))
    loss_fn = SimCSELoss(0.05)
    times = []
    last = time.perf_counter()
    for step in range(steps):
        rows = table.slice(step * batch, batch).to_pydict()
        inputs = tokenize_views(views(rows, "supervised"), tokenizer, max_len)
        vectors, _ = model(**inputs)
        loss = loss_fn(*vectors.view(-1, batch, vectors.shape[-1]))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        now = time.perf_counter()
        times.append(now - last)
        last = now
    return batch * (steps - warmup) / sum(times[warmup:])


def ray_run(data: Path, data_dir: Path, workers: int, batch: int, max_len: int, steps: int, warmup: int,
            threads: int) -> float:
    from syncse_ray.config import load_config
    from syncse_ray.train import run_train

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(None, [
            f"run_dir={tmp}", f"data_dir={data_dir}", f"train.data={data}", f"train.num_workers={workers}",
            f"train.batch_size={batch}", f"train.max_seq_length={max_len}", f"train.max_steps={steps}",
            f"train.eval_steps={steps}", "train.log_every=1", "train.dev_max_pairs=2", "train.precision=fp32",
            "train.backend=deepspeed", "train.deepspeed.zero_stage=2", f"train.cpus_per_worker={threads}"])
        result = run_train(cfg)
        log = [json.loads(line) for line in result.metrics_path.read_text().splitlines()]
    seconds = [workers * batch / r["samples_per_s"] for r in log if "samples_per_s" in r]  # one per step
    return workers * batch * (steps - warmup) / sum(seconds[warmup:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the measurement")
    parser.add_argument("--batch-size", type=int, default=32, help="per worker")
    parser.add_argument("--max-seq-length", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (= Ray CPUs) per worker")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import ray

    from syncse_ray.config.root import default_data_dir
    from syncse_ray.models import resolve_model
    from syncse_ray.train.data import read_training_table

    data_dir = default_data_dir()
    model_path = resolve_model("bundled:all-minilm-l6-v2")
    table = read_training_table(data_dir / "seeds" / "snli", "supervised", seed=0)
    table = table.slice(0, 2 * args.batch_size * args.steps)  # `steps` batches for each of 2 workers
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"DS_ACCELERATOR": "cpu"}})
    common = {"batch": args.batch_size, "max_len": args.max_seq_length, "steps": args.steps,
              "warmup": args.warmup, "threads": args.threads}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "triplets.parquet"
        import pyarrow.parquet as pq

        pq.write_table(table, data)
        # The bare loop runs before and after the Ray runs, so a change in machine load between them shows.
        bare_before = bare_loop(model_path, table, **common)
        one = ray_run(data, data_dir, 1, **common)
        two = ray_run(data, data_dir, 2, **common)
        bare_after = bare_loop(model_path, table, **common)
    bare = (bare_before + bare_after) / 2
    ray.shutdown()
    report = {
        "setup": {"model": "bundled:all-minilm-l6-v2", "per_worker_batch": args.batch_size,
                  "max_seq_length": args.max_seq_length, "precision": "fp32", "steps": args.steps,
                  "warmup_steps_excluded": args.warmup, "threads_per_worker": args.threads,
                  "cpu_count": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]},
        "samples_per_s": {"bare_pytorch_before": bare_before, "bare_pytorch_after": bare_after,
                          "ray_deepspeed_1_worker": one, "ray_deepspeed_2_workers": two},
        "ray_vs_bare": one / bare,
        "two_vs_one": two / one,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
