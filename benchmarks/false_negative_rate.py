"""How many negatives would guide masking remove? For a triplet folder (sent0, sent1, hard_neg), the guide's
cosines of every anchor with every other row's positive and every row's hard negative (the whole folder as one
batch: an upper bound for any batch drawn from it), counted above the anchor's own positive (GISTEmbed, ratio 1)
and above a threshold (MultiCSR).

    SYNCSE_DATA_DIR=../shared/data .venv/bin/python benchmarks/false_negative_rate.py runs/quality/synth/data \
        [--guide bundled:all-minilm-l6-v2] [--threshold 0.95] [--batch 32]
"""

from __future__ import annotations

import argparse

import numpy as np
import pyarrow.parquet as pq


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data")
    parser.add_argument("--guide", default="bundled:all-minilm-l6-v2")
    parser.add_argument("--threshold", type=float, default=0.95)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()

    from syncse_ray.models.encoders import load_encoder

    table = pq.read_table(args.data, columns=["sent0", "sent1", "hard_neg"]).to_pydict()
    encoder = load_encoder(args.guide)
    a, p, h = (encoder.encode(table[c], show_progress=False) for c in ("sent0", "sent1", "hard_neg"))
    a, p, h = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (a, p, h))
    to_pos, to_neg = a @ p.T, a @ h.T
    own = np.diag(to_pos)
    n = len(own)
    others = ~np.eye(n, dtype=bool)
    pairs = n * (2 * n - 1)
    over_pos = int(((to_pos > own[:, None]) & others).sum() + (to_neg > own[:, None]).sum())
    over_threshold = int(((to_pos > args.threshold) & others).sum() + (to_neg > args.threshold).sum())
    per_batch = over_pos / pairs * args.batch * (2 * args.batch - 1)
    print(f"{n} rows, {pairs} (anchor, negative) pairs under guide {args.guide}")
    print(f"above the anchor's own positive (ratio 1.0): {over_pos} ({100 * over_pos / pairs:.4f}%); of them the "
          f"row's own hard negative: {int((np.diag(to_neg) > own).sum())}")
    print(f"above {args.threshold}: {over_threshold}")
    print(f"expected masked per batch of {args.batch} (ratio 1.0): {per_batch:.3f}")


if __name__ == "__main__":
    main()
