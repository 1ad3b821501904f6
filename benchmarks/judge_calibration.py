"""Where the selection thresholds come from: the embedding judge's cosines on human SNLI triplets.

    SYNCSE_DATA_DIR=../shared/data .venv/bin/python benchmarks/judge_calibration.py [--n 1000] [--judge MODEL]

Scores the first N (premise, entailment, contradiction) triplets of SNLI dev with the judge (default: the
bundled all-MiniLM-L6-v2, the default `synth.judge.model`), prints percentiles of cos(premise, entailment) and
cos(premise, contradiction), and how many human triplets pass each default threshold alone and all of them
together (one candidate per kind, `synth.selection.select_triplet`). min_positive, max_positive and min_negative
are set so that each alone keeps about 90% of human triplets (near-copy: 99%); the margin (0.2) was chosen by
`benchmarks/triplet_quality.py`'s sweep against an independent judge (docs/synth.md, "Verified triplets").
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from pathlib import Path

import numpy as np

from syncse_ray.config.synth import JudgeConfig
from syncse_ray.models.encoders import load_encoder
from syncse_ray.synth.selection import Candidate, select_triplet
from syncse_ray.train.data import snli_triplets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--judge", default=JudgeConfig().model)
    parser.add_argument("--llm", default=None, metavar="MODEL",
                        help="also calibrate the LLM judge (e.g. bundled:smollm2-135m-instruct) on the first 200")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("SYNCSE_DATA_DIR", "data")))
    args = parser.parse_args()
    rows = snli_triplets(args.data_dir / "seeds" / "snli" / "labels.dev").to_pylist()[:args.n]
    encoder = load_encoder(args.judge)
    a, p, n = (encoder.encode([r[c] for r in rows], show_progress=False) for c in ("sent0", "sent1", "hard_neg"))
    a, p, n = (v / np.linalg.norm(v, axis=1, keepdims=True) for v in (a, p, n))
    sp, sn = (a * p).sum(1), (a * n).sum(1)
    t = JudgeConfig()
    print(f"{len(rows)} SNLI dev gold triplets, judge {args.judge}")
    print("cos(premise, entailment)    percentiles 1/5/10/50/90/99:",
          " ".join(f"{x:.3f}" for x in np.percentile(sp, [1, 5, 10, 50, 90, 99])))
    print("cos(premise, contradiction) percentiles 1/5/10/50/90/99:",
          " ".join(f"{x:.3f}" for x in np.percentile(sn, [1, 5, 10, 50, 90, 99])))
    print(f"agreement cos(p, entailment) > cos(p, contradiction): {(sp > sn).mean():.1%}")
    bound = np.minimum(sp - t.margin, sp * t.relative_margin)
    for name, ok in [(f"min_positive {t.min_positive}", sp >= t.min_positive),
                     (f"max_positive {t.max_positive}", sp < t.max_positive),
                     (f"min_negative {t.min_negative}", sn >= t.min_negative),
                     (f"margin {t.margin} / relative {t.relative_margin}", sn <= bound)]:
        print(f"  passes {name:<32} {ok.mean():.1%}")
    picks = [select_triplet([Candidate("positive", 0, "p", None, float(x))],
                            [Candidate("hard_negative", 0, "n", None, float(y))], t) for x, y in zip(sp, sn)]
    print(f"all thresholds together (one candidate a kind): kept {sum(x.reason is None for x in picks) / len(picks):.1%};"
          f" drops {dict(Counter(x.reason for x in picks if x.reason))}")
    if args.llm:
        calibrate_llm(args.llm, rows[:200])


def calibrate_llm(model: str, rows: list[dict]) -> None:
    """P(yes) of the LLM judge's two questions on human entailments and contradictions: a judge worth using
    separates them."""
    from vllm import SamplingParams

    from syncse_ray.models.references import resolve_model
    from syncse_ray.synth.engine import build_llm
    from syncse_ray.synth.judge import LLM_TOP_LOGPROBS, llm_judge_messages, yes_probability
    from syncse_ray.synth.prompts import HARD_NEGATIVE, POSITIVE

    llm = build_llm(resolve_model(model))
    params = SamplingParams(temperature=0.0, max_tokens=1, logprobs=LLM_TOP_LOGPROBS)
    print(f"LLM judge {model}, {len(rows)} SNLI dev triplets: mean P(yes)")
    for kind, question in ((POSITIVE, "follows from"), (HARD_NEGATIVE, "contradicts")):
        for column, label in (("sent1", "entailment"), ("hard_neg", "contradiction")):
            outs = llm.chat([llm_judge_messages(r["sent0"], r[column], kind) for r in rows], params, use_tqdm=False)
            probs = [yes_probability({lp.decoded_token or "": lp.logprob for lp in o.outputs[0].logprobs[0].values()})
                     for o in outs]
            print(f"  '{question}' asked of the {label:<13} {np.mean(probs):.3f} "
                  f"(min {np.min(probs):.3f}, max {np.max(probs):.3f})")


if __name__ == "__main__":  # the vLLM engine starts worker processes
    main()
