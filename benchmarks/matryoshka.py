"""STS at reduced dimensions: the same training with and without Matryoshka prefixes (`train.matryoshka_dims`).

Two runs of `syncse_ray.train.run_train` on the same N SNLI gold triplets (premise, entailment, contradiction;
the premises benchmarks/quality.py uses), same encoder, recipe and seed: plain SimCSE, and SimCSE summed over the
prefixes --dims with weights 1. Each model, and the encoder before training, is scored by
`syncse_ray.eval.run_eval` (SentEval "all" STS) on its vectors cut to each of --dims (cosine: re-normalising the
cut vector does not change it; the server's `dimensions` does the same cut).

    SYNCSE_DATA_DIR=../shared/data .venv/bin/python benchmarks/matryoshka.py [--n 1000] [--dims 384,128,64,32]
    ... --encoder bundled:smollm2-135m-instruct --precision bf16 --lr 4e-4 --dims 576,128,64,32 --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


class Truncated:
    """An encoder whose vectors are cut to the first `dims` dimensions."""

    def __init__(self, encoder, dims: int):
        self.encoder, self.dims = encoder, dims
        self.name = f"{encoder.name}[:{dims}]"

    def encode(self, sentences, *, show_progress: bool = False):
        return self.encoder.encode(sentences, show_progress=show_progress)[:, :self.dims]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--encoder", default="bundled:all-minilm-l6-v2")
    parser.add_argument("--pooler", default="avg")
    parser.add_argument("--dims", default="384,128,64,32")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--tasks", default="sts")
    parser.add_argument("--out", type=Path, default=Path("runs/matryoshka"))
    args = parser.parse_args()
    dims = [int(d) for d in args.dims.split(",")]

    from quality import sts_scores, write_inputs

    from syncse_ray.config import load_config
    from syncse_ray.config.root import default_data_dir
    from syncse_ray.eval import run_eval
    from syncse_ray.models.encoders import CachedEncoder, load_encoder
    from syncse_ray.train import run_train

    data_dir = default_data_dir().resolve()
    out = args.out.resolve()
    _, gold, n = write_inputs(data_dir, args.n, out)
    steps = max(1, n // args.batch_size)
    models = {"untrained": args.encoder}
    for arm, extra in (("plain", []), ("matryoshka", [f"train.matryoshka_dims={json.dumps(dims)}"])):
        cfg = load_config(None, [
            f"run_dir={out / arm}", f"data_dir={data_dir}", "ray.num_cpus=8", f"train.data={gold}",
            f"train.model={args.encoder}", f"train.pooler={args.pooler}", f"train.batch_size={args.batch_size}",
            f"train.precision={args.precision}",
            f"train.max_steps={steps}", f"train.eval_steps={steps}", f"train.lr={args.lr}", "train.num_workers=1",
            *extra])
        models[arm] = str(run_train(cfg).best_dir)
    rows = {}
    for arm, model in models.items():
        encoder = CachedEncoder(load_encoder(model, pooler=args.pooler if arm == "untrained" else None))
        for d in dims:
            results = run_eval(Truncated(encoder, d), args.tasks.split(","), data_dir, out / "eval" / f"{arm}-{d}",
                               show_progress=False)
            rows[(arm, d)] = sts_scores(results).get("avg")
            print(f"[matryoshka] {arm} {d} dims: STS avg {rows[(arm, d)]:.2f}", flush=True)
    print(f"\nload average {os.getloadavg()}; {n} SNLI gold triplets, {steps} steps of {args.batch_size}\n")
    print("| model | " + " | ".join(f"{d} dims" for d in dims) + " |")
    print("| --- |" + " ---: |" * len(dims))
    for arm in models:
        print(f"| {arm} | " + " | ".join(f"{rows[(arm, d)]:.2f}" for d in dims) + " |")


if __name__ == "__main__":
    main()
