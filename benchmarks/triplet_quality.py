"""Are the kept triplets right? Synthesis arms side by side on the same SNLI premises, scored by judges.

    SYNCSE_DATA_DIR=../shared/data .venv/bin/python benchmarks/triplet_quality.py [--n 512] [--arms none,embedding]

Each arm runs the project's synthesis (`run_synth`, bundled SmolLM2 writer, same seed) on the first N distinct
premises of SNLI test: `none` = one candidate per (sentence, kind), no judge (the behaviour before verified
triplets); `embedding` = the defaults (k candidates, MiniLM judge, selection with margins); `llm` = k candidates
judged by SmolLM2's yes/no log-probabilities. The vLLM seeds make candidate 0 of every arm the same text as the
`none` arm's answer, so the arms differ only by over-generation and selection.

Every arm's kept rows are then scored by judges: agreement = share of rows with cos(anchor, positive) >
cos(anchor, hard negative), and the mean cosines. Judges:
- `minilm`: the bundled all-MiniLM-L6-v2 (it *selects* the `embedding` arm, so it is not independent there);
- `smollm2-snli`: the bundled SmolLM2-135M as an encoder (mean pooling) trained by the project on 1,000 human
  SNLI *dev* triplets (premises disjoint from the test premises used here): independent of every arm.
The `gold` row scores SNLI's human (premise, entailment, contradiction) triplets for the same premises: the
judges' own ceiling. Tokens per kept triplet count every prompt and output token (generation and LLM judge).
Results: <out>/results.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from syncse_ray.config import Config
from syncse_ray.config.synth import JudgeConfig, SynthConfig
from syncse_ray.config.train import TrainConfig
from syncse_ray.models.encoders import load_encoder
from syncse_ray.synth import run_synth
from syncse_ray.synth.selection import Candidate, select_triplet
from syncse_ray.train import run_train
from syncse_ray.train.data import snli_triplets


def gold_triplets(data_dir: Path, split: str, n: int) -> list[dict]:
    return snli_triplets(data_dir / "seeds" / "snli" / f"labels.{split}").to_pylist()[:n]


def train_independent_judge(data_dir: Path, out: Path, cache_dir: Path) -> Path:
    """SmolLM2-135M (mean pooling, bf16) trained on 1,000 SNLI dev gold triplets with the project's trainer
    (in `out`; a finished training there is reused)."""
    train_file = out / "snli_dev_gold.parquet"
    train_file.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(gold_triplets(data_dir, "dev", 1000)), train_file)
    cfg = Config(name="judge", run_dir=out, data_dir=data_dir, cache_dir=cache_dir, seed=0,
                 train=TrainConfig(data=train_file, model="bundled:smollm2-135m-instruct", pooler="avg",
                                   precision="bf16", batch_size=32, max_steps=31, lr=1e-4, num_workers=1,
                                   eval_steps=31, dev_max_pairs=200, max_seq_length=32))
    return run_train(cfg).final_dir


_VECTORS: dict[tuple[int, str], np.ndarray] = {}  # (judge, text) -> unit vector: the sweep re-scores the same texts


def score(encoder, rows: list[dict]) -> dict:
    if not rows:
        return {"agreement": float("nan"), "mean_pos": float("nan"), "mean_neg": float("nan")}
    texts = [r[c] for c in ("sent0", "sent1", "hard_neg") for r in rows]
    todo = list(dict.fromkeys(t for t in texts if (id(encoder), t) not in _VECTORS))
    if todo:
        vecs = encoder.encode(todo, show_progress=False).astype(np.float32)
        for t, v in zip(todo, vecs / np.linalg.norm(vecs, axis=1, keepdims=True)):
            _VECTORS[(id(encoder), t)] = v
    a, p, n = (np.stack([_VECTORS[(id(encoder), r[c])] for r in rows]) for c in ("sent0", "sent1", "hard_neg"))
    sp, sn = (a * p).sum(1), (a * n).sum(1)
    return {"agreement": float((sp > sn).mean()), "mean_pos": float(sp.mean()), "mean_neg": float(sn.mean())}


def run_arm(arm: str, premises_file: Path, n: int, candidates: int, data_dir: Path, out: Path,
            cache_dir: Path) -> dict:
    judge = JudgeConfig(method="none" if arm == "none" else arm)
    synth = SynthConfig(input=premises_file, limit=n, chunk_size=64, candidates=1 if arm == "none" else candidates,
                        judge=judge)
    cfg = Config(name=f"triplets-{arm}", run_dir=out / arm, data_dir=data_dir, cache_dir=cache_dir, seed=0,
                 synth=synth)
    cfg.ray.num_cpus = 8
    started = time.time()
    result = run_synth(cfg)
    annotate = result.manifest["phases"]["annotate"]
    tokens = (annotate["prompt_tokens"] + annotate["output_tokens"] + annotate.get("judge_prompt_tokens", 0)
              + annotate.get("judge_output_tokens", 0))
    rows = pq.read_table(result.data_dir, columns=["sent0", "sent1", "hard_neg"]).to_pylist()
    return {"arm": arm, "kept": result.kept, "requested": result.requested, "tokens": tokens,
            "tokens_per_kept": tokens / result.kept if result.kept else None, "drop_reasons": result.drop_reasons,
            "wall_seconds": time.time() - started, "rows": rows}


def reselect(synth_dir: Path, thresholds: JudgeConfig, max_candidates: int) -> list[dict]:
    """The rows selection would keep from an embedding arm's stored candidates with other thresholds or fewer
    candidates (the first `max_candidates` of each kind): no new generation."""
    anchors = {r["id"]: r["sent0"] for part in ("data", "dropped")
               for r in pq.read_table(synth_dir / part, columns=["id", "sent0"]).to_pylist()}
    by_id: dict[str, dict[str, list[Candidate]]] = {}
    for c in pq.read_table(synth_dir / "candidates").to_pylist():
        if c["index"] < max_candidates:
            by_id.setdefault(c["id"], {"positive": [], "hard_negative": []})[c["kind"]].append(
                Candidate(c["kind"], c["index"], c["text"], c["reason"], c["sim"], c["llm"]))
    rows = []
    for row_id, cands in sorted(by_id.items()):
        pick = select_triplet(cands["positive"], cands["hard_negative"], thresholds)
        if pick.reason is None:
            rows.append({"sent0": anchors[row_id], "sent1": pick.positive.text, "hard_neg": pick.negative.text})
    return rows


def sweep(synth_dir: Path, judges: dict, candidates: int) -> list[dict]:
    """Kept rows and the judges' agreement as the margin and the number of candidates change."""
    base = JudgeConfig()
    grid = [(m, k) for m in (0.0, 0.05, 0.1, 0.15, 0.2, 0.25) for k in sorted({1, 2, candidates})]
    out = []
    for margin, k in grid:
        rows = reselect(synth_dir, base.model_copy(update={"margin": margin}), k)
        out.append({"margin": margin, "candidates": k, "kept": len(rows),
                    **{j: score(e, rows) for j, e in judges.items()}})
    return out


def _judged_cells(row: dict) -> str:
    """Agreement and mean cosines under each judge, as Markdown cells."""
    return " | ".join(f"{row[j]['agreement']:.1%} | {row[j]['mean_pos']:.3f} / {row[j]['mean_neg']:.3f}"
                      for j in ("minilm", "smollm2-snli"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512, help="SNLI test premises")
    parser.add_argument("--arms", default="none,embedding", help="comma-separated: none, embedding, llm")
    parser.add_argument("--candidates", type=int, default=SynthConfig().candidates)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-triplet-quality"))
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("SYNCSE_DATA_DIR", "data")))
    parser.add_argument("--judge-dir", type=Path, default=None,
                        help="where the independent judge is trained (default <out>/judge_train; reused if done)")
    parser.add_argument("--score", type=Path, nargs="+", metavar="SYNTH_DATA",
                        help="only score these triplet folders (e.g. runs/quickstart/synth/data) with the judges")
    args = parser.parse_args()
    from syncse_ray.config.root import default_cache_dir

    cache_dir = default_cache_dir()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    gold = gold_triplets(args.data_dir, "test", 10**9)
    premises = list(dict.fromkeys(
        (args.data_dir / "seeds" / "snli" / "s1.test").read_text(encoding="utf-8").splitlines()))[:args.n]
    premises_file = out / "premises.txt"
    premises_file.write_text("\n".join(premises) + "\n", encoding="utf-8")
    wanted = set(premises)
    gold = [r for r in gold if r["sent0"] in wanted]

    if args.score:
        arms = [{"arm": str(folder), "kept": None, "tokens_per_kept": None, "drop_reasons": {}, "wall_seconds": 0.0,
                 "rows": pq.read_table(folder, columns=["sent0", "sent1", "hard_neg"]).to_pylist()}
                for folder in args.score]
        for arm in arms:
            arm["kept"] = len(arm["rows"])
    else:
        arms = [run_arm(a, premises_file, args.n, args.candidates, args.data_dir, out, cache_dir)
                for a in args.arms.split(",")]
    judges = {"minilm": load_encoder("bundled:all-minilm-l6-v2"),
              "smollm2-snli": load_encoder(str(train_independent_judge(
        args.data_dir, (args.judge_dir or out / "judge_train").resolve(), cache_dir)))}
    table = [{"arm": "gold (SNLI human)", "kept": len(gold), "tokens_per_kept": None,
              **{j: score(e, gold) for j, e in judges.items()}}]
    for arm in arms:
        table.append({**{k: v for k, v in arm.items() if k != "rows"},
                      **{j: score(e, arm["rows"]) for j, e in judges.items()}})
    (out / "results.json").write_text(json.dumps({"n": args.n, "candidates": args.candidates, "table": table},
                                                 indent=2))
    base = next((r["tokens_per_kept"] for r in table if r["arm"] == "none"), None)
    print(f"\n{args.n} SNLI test premises, SmolLM2 writer, {args.candidates} candidates per (sentence, kind)\n")
    print("| arm | kept | MiniLM agreement | MiniLM cos pos / neg | SmolLM2-SNLI agreement | "
          "SmolLM2-SNLI cos pos / neg | tokens / kept | × none |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in table:
        tpk = r["tokens_per_kept"]
        print(f"| {r['arm']} | {r['kept']} | {_judged_cells(r)} | {'' if tpk is None else f'{tpk:.0f}'} | "
              f"{'' if tpk is None or not base else f'{tpk / base:.2f}'} |")
    for arm in arms:
        print(f"{arm['arm']}: drops {arm['drop_reasons']}, {arm['wall_seconds']:.0f} s")
    swept = ([out / "embedding" / "synth"] if any(a["arm"] == "embedding" for a in arms) and not args.score
             else [folder.parent for folder in args.score or [] if (folder.parent / "candidates").is_dir()])
    for i, synth_dir in enumerate(swept):
        rows = sweep(synth_dir, judges, args.candidates)
        (out / f"sweep-{i}.json").write_text(json.dumps({"synth_dir": str(synth_dir), "rows": rows}, indent=2))
        print(f"\nRe-selection from the stored candidates of {synth_dir} (no new generation):\n")
        print("| margin | candidates used | kept | MiniLM agreement | MiniLM cos pos / neg | SmolLM2-SNLI agreement "
              "| SmolLM2-SNLI cos pos / neg |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in rows:
            print(f"| {r['margin']:.2f} | {r['candidates']} | {r['kept']} | {_judged_cells(r)} |")


if __name__ == "__main__":
    main()
