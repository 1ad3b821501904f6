"""Training throughput: one Ray Train + DeepSpeed worker against a bare PyTorch loop, and 2 workers against 1.

Two cases (`--case`):

    minilm          bundled all-MiniLM-L6-v2, cls pooler, fp32 (the default)
    smollm2-bf16    bundled SmolLM2-135M as the encoder, avg pooler, bf16 (DeepSpeed bf16: bf16 weights for the
                    forward and backward passes, fp32 master weights and AdamW state; the bare loop does the
                    same by hand: a bf16 model, fp32 master copies, AdamW on them, copied back after each step)

All runs of a case train the same SimCSEModel on the same SNLI gold triplets with the same per-worker batch,
max length, precision and CPU threads per worker. Throughput is
triplets (rows) per second over the steps after `--warmup`, wall time between optimizer steps (data,
tokenization, forward, backward, optimizer; no dev evaluation):

    ray_vs_bare    = samples/s (Ray Train + DeepSpeed ZeRO-2, 1 worker) / samples/s (bare loop)   goal ≥ 0.9
                     (the bare loop runs before and after the Ray runs; their mean is used)
    two_vs_one     = samples/s (2 workers, global batch 2B) / samples/s (1 worker, batch B)

    SYNCSE_DATA_DIR=../shared/data .venv/bin/python benchmarks/train_throughput.py [--steps 12] [--out f.json]
    SYNCSE_DATA_DIR=../shared/data .venv/bin/python benchmarks/train_throughput.py --case smollm2-bf16 \
        --threads 2 --no-two-workers
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

CASES = {"minilm": {"model": "bundled:all-minilm-l6-v2", "pooler": "cls", "precision": "fp32"},
         "smollm2-bf16": {"model": "bundled:smollm2-135m-instruct", "pooler": "avg", "precision": "bf16"}}


def bare_loop(model_path: Path, table, batch: int, max_len: int, steps: int, warmup: int, threads: int,
              pooler: str = "cls", precision: str = "fp32") -> float:
    """The same work as one Ray Train worker, in a plain PyTorch loop in this process."""
    import torch
    from transformers import AutoTokenizer

    from syncse_ray.config import TrainConfig
    from syncse_ray.models.pooling import prepare_tokenizer
    from syncse_ray.train.data import tokenize_views, views
    from syncse_ray.train.engines import adamw
    from syncse_ray.train.losses import SimCSELoss
    from syncse_ray.train.model import SimCSEModel

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(model_path), pooler)
    bf16 = precision == "bf16"
    model = SimCSEModel.from_pretrained(model_path, pooler,
                                        dtype=torch.bfloat16 if bf16 else torch.float32).train()
    # bf16: fp32 master weights (AdamW steps them), the bf16 model gets a copy after every step.
    master = torch.nn.Module()
    if bf16:
        master.params = torch.nn.ParameterList([torch.nn.Parameter(p.detach().float().clone())
                                                for p in model.parameters()])
    optimizer = adamw(master if bf16 else model, TrainConfig(lr=5e-5, weight_decay=0.0))
    loss_fn = SimCSELoss(0.05)
    times = []
    last = time.perf_counter()
    for step in range(steps):
        rows = table.slice(step * batch, batch).to_pydict()
        inputs = tokenize_views(views(rows, "supervised"), tokenizer, max_len)
        vectors, _ = model(**inputs)
        loss = loss_fn(*vectors.view(-1, batch, vectors.shape[-1]))
        loss.backward()
        if bf16:
            for p, m in zip(model.parameters(), master.params):
                m.grad = p.grad.float()
            model.zero_grad(set_to_none=True)
        torch.nn.utils.clip_grad_norm_((master if bf16 else model).parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if bf16:
            with torch.no_grad():
                for p, m in zip(model.parameters(), master.params):
                    p.copy_(m)
        now = time.perf_counter()
        times.append(now - last)
        last = now
    return batch * (steps - warmup) / sum(times[warmup:])


def ray_run(data: Path, data_dir: Path, workers: int, batch: int, max_len: int, steps: int, warmup: int,
            threads: int, pooler: str = "cls", precision: str = "fp32",
            model: str = "bundled:all-minilm-l6-v2") -> float:
    from syncse_ray.config import load_config
    from syncse_ray.train import run_train

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(None, [
            f"run_dir={tmp}", f"data_dir={data_dir}", f"train.data={data}", f"train.num_workers={workers}",
            f"train.batch_size={batch}", f"train.max_seq_length={max_len}", f"train.max_steps={steps}",
            f"train.eval_steps={steps}", "train.log_every=1", "train.dev_max_pairs=2", f"train.precision={precision}",
            f"train.model={model}", f"train.pooler={pooler}",
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
    parser.add_argument("--case", choices=sorted(CASES), default="minilm")
    parser.add_argument("--no-two-workers", action="store_true", help="leave out the 2-worker run")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import ray

    from syncse_ray.config.root import default_data_dir
    from syncse_ray.models.references import resolve_model
    from syncse_ray.train.data import read_training_table

    data_dir = default_data_dir()
    case = CASES[args.case]
    model_path = resolve_model(case["model"])
    table = read_training_table(data_dir / "seeds" / "snli", "supervised", seed=0)
    table = table.slice(0, 2 * args.batch_size * args.steps)  # `steps` batches for each of 2 workers
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"DS_ACCELERATOR": "cpu"}})
    common = {"batch": args.batch_size, "max_len": args.max_seq_length, "steps": args.steps,
              "warmup": args.warmup, "threads": args.threads, "pooler": case["pooler"],
              "precision": case["precision"]}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "triplets.parquet"
        import pyarrow.parquet as pq

        pq.write_table(table, data)
        # The bare loop runs before and after the Ray runs, so a change in machine load between them shows.
        bare_before = bare_loop(model_path, table, **common)
        print(f"bare PyTorch (before): {bare_before:.2f} samples/s", flush=True)
        one = ray_run(data, data_dir, 1, model=case["model"], **common)
        print(f"Ray Train + DeepSpeed, 1 worker: {one:.2f} samples/s", flush=True)
        two = None if args.no_two_workers else ray_run(data, data_dir, 2, model=case["model"], **common)
        bare_after = bare_loop(model_path, table, **common)
        print(f"bare PyTorch (after): {bare_after:.2f} samples/s", flush=True)
    bare = (bare_before + bare_after) / 2
    ray.shutdown()
    report = {
        "setup": {"case": args.case, **case, "per_worker_batch": args.batch_size,
                  "max_seq_length": args.max_seq_length, "steps": args.steps,
                  "warmup_steps_excluded": args.warmup, "threads_per_worker": args.threads,
                  "cpu_count": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]},
        "samples_per_s": {"bare_pytorch_before": bare_before, "bare_pytorch_after": bare_after,
                          "ray_deepspeed_1_worker": one, "ray_deepspeed_2_workers": two},
        "ray_vs_bare": one / bare,
        "two_vs_one": None if two is None else two / one,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
