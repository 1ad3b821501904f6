"""The run report: one Markdown file and its PNG plots in the run folder, from what the stages wrote.

    <run_dir>/report.md              data counts and drop reasons, tokens and throughput, training curves,
    <run_dir>/report_loss.png        the STS table beside the paper's rows, wall time per stage
    <run_dir>/report_dev.png

It reads files only (synth/manifest.json, synth/stats.json, train/metrics.jsonl + stage.json, eval/results.json,
pipeline.json); a stage that did not run is left out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from syncse_ray.config import Config
from syncse_ray.io import markdown_table
from syncse_ray.synth.layout import Layout

REPORT_FILE = "report.md"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return [*markdown_table(header, rows), ""]


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def _margin_histogram(synth_dir: Path, path: Path) -> bool:
    """Histogram of cos(anchor, positive) - cos(anchor, hard negative) over the kept rows, by the judge."""
    import pyarrow.dataset as pads

    data = synth_dir / "data"
    if not data.is_dir() or "pos_score" not in pads.dataset(data, format="parquet").schema.names:
        return False
    table = pads.dataset(data, format="parquet").to_table(columns=["pos_score", "neg_score"]).to_pylist()
    margins = [r["pos_score"] - r["neg_score"] for r in table if r["pos_score"] is not None
               and r["neg_score"] is not None]
    if not margins:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.hist(margins, bins=30)
    ax.axvline(0.0, color="k", lw=0.8)
    ax.set_xlabel("cos(anchor, positive) − cos(anchor, hard negative), judge")
    ax.set_ylabel("kept rows")
    ax.set_title("judge margin of the kept triplets")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _verification_lines(synth_dir: Path, run_dir: Path, manifest: dict[str, Any],
                        stats: dict[str, Any]) -> list[str]:
    judge = stats.get("judge") or {}
    if not judge:
        return []
    jcfg = manifest.get("config", {}).get("synth", {})
    method = jcfg.get("judge", {}).get("method", "?")
    model = jcfg.get("judge", {}).get("model") if "embedding" in method else None
    out = ["### Verified triplets", "",
           f"{jcfg.get('candidates', 1)} candidates per (sentence, kind), judge **{method}**"
           + (f" (`{model}`)" if model else "") + ".", ""]
    fmt = lambda v, f: "–" if v is None else format(v, f)
    out += _table(["candidates per kept triplet", "tokens per kept triplet", "judge agreement (kept)",
                   "mean cos(anchor, positive)", "mean cos(anchor, hard negative)", "median margin"],
                  [[fmt(judge.get("candidates_per_kept"), ".1f"), fmt(judge.get("tokens_per_kept"), ".0f"),
                    fmt(judge.get("agreement"), ".1%"), fmt(judge.get("mean_pos"), ".3f"),
                    fmt(judge.get("mean_neg"), ".3f"), fmt((judge.get("margin_quantiles") or {}).get("0.5"), ".3f")]])
    quantiles = judge.get("margin_quantiles") or {}
    if quantiles:
        out += [(f"Judge margin (cos positive − cos hard negative) quantiles over "
                 f"{judge.get('scored_rows', '?')} sampled kept rows:"), "",
                *_table([f"{float(q):.0%}" for q in quantiles], [[f"{v:.3f}" for v in quantiles.values()]])]
    outcomes = judge.get("candidate_reasons") or {}
    if outcomes:
        out += [("Every candidate's outcome (`not_selected`: passed the filters, another was chosen or the row "
                "was dropped):"), "", *_table(["outcome", "candidates"],
                                             sorted(([k, v] for k, v in outcomes.items()), key=lambda kv: -kv[1]))]
    out += [("The judge selected these rows, so its agreement on them is not an independent measure; "
            "`benchmarks/triplet_quality.py` scores them with a judge that did not select them."), ""]
    if _margin_histogram(synth_dir, run_dir / "report_margins.png"):
        out += ["![judge margins](report_margins.png)", ""]
    return out


def _synth_section(synth_dir: Path, run_dir: Path) -> list[str]:
    layout = Layout(synth_dir)
    manifest = _read_json(layout.manifest)
    stats = _read_json(layout.stats)
    if not manifest and not stats:
        return []
    manifest = manifest or {}
    out = ["## Data (synthesis)", ""]
    if manifest:
        out += [f"Mode **{manifest.get('mode')}**, model `{manifest.get('model')}`.", ""]
    else:  # stats.json without its manifest (e.g. copied alone): its own counts
        out += ["No `synth/manifest.json`; counts from `synth/stats.json`.", ""]
    rows = []
    for phase, p in manifest.get("phases", {}).items():
        rows.append([phase, p.get("requests", "–"), p.get("kept", "–"), p.get("dropped", "–"),
                     p.get("prompt_tokens", "–"), p.get("output_tokens", "–"),
                     f"{p['output_tokens_per_s']:.1f}" if p.get("output_tokens_per_s") else "–"])
    if rows:
        out += _table(["phase", "LLM requests", "kept", "dropped", "prompt tokens", "output tokens",
                       "output tokens/s"], rows)
    writer = manifest.get("writer") or {}
    if writer.get("kind") == "openai":
        cost = writer.get("cost_usd")
        out += ["", (f"Written through the OpenAI-compatible endpoint `{writer.get('endpoint')}` (model "
                     f"`{writer.get('model')}`): {writer.get('http_requests', 0)} HTTP requests, "
                     f"{writer.get('retries', 0)} retries" + (f", about ${cost:.4f}." if cost is not None else "."))]
    elif (stats or {}).get("kept"):
        out += _table(["phase", "kept", "dropped"], [[phase, n, (stats.get("dropped") or {}).get(phase, "–")]
                                                     for phase, n in stats["kept"].items()])
    dropped = {phase: sum(counts.values()) for phase, counts in (stats or {}).get("drop_reasons", {}).items()}
    reasons = [[phase, reason, n, f"{n / dropped[phase]:.0%}"]
               for phase, counts in (stats or {}).get("drop_reasons", {}).items()
               for reason, n in sorted(counts.items(), key=lambda kv: -kv[1])]
    if reasons:
        out += ["Drop reasons:", "", *_table(["phase", "reason", "rows", "share of the phase's drops"], reasons)]
    diversity = (stats or {}).get("diversity", {})
    if diversity:
        out += ["Diversity of the kept rows:", "",
                *_table(["column", "distinct-2", "duplicate rate"],
                        [[col, f"{d['distinct_2']:.3f}", f"{d['duplicate_rate']:.3f}"]
                         for col, d in diversity.items()])]
    out += _verification_lines(synth_dir, run_dir, manifest, stats or {})
    return out


def _plot(path: Path, series: dict[str, tuple[list[float], list[float]]], ylabel: str, title: str,
          xlabel: str = "step") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for label, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _train_section(train_dir: Path, run_dir: Path) -> list[str]:
    history = _read_jsonl(train_dir / "metrics.jsonl")
    marker = _read_json(train_dir / "stage.json")
    if not history and not marker:
        return []
    out = ["## Training", ""]
    result = (marker or {}).get("result", {})
    if result:
        out += _table(["steps", "best step", "best dev score (mean of STS-B dev, SICK-R trial)", "best model"],
                      [[result.get("steps"), result.get("best_step"),
                        f"{result['best_score']:.2f}" if result.get("best_score") is not None else "–",
                        f"`{result.get('best_dir')}`"]])
    losses = [r for r in history if "loss" in r]
    devs = [r for r in history if "dev_score" in r]
    if losses:
        _plot(run_dir / "report_loss.png", {"loss": ([r["step"] for r in losses], [r["loss"] for r in losses])},
              "contrastive loss", "training loss")
        out += ["![training loss](report_loss.png)", ""]
        speeds = [r["samples_per_s"] for r in losses if r.get("samples_per_s")]
        if speeds:
            out += [f"Throughput: {sum(speeds) / len(speeds):.1f} samples/s (mean over logged windows).", ""]
    if devs:
        keys = [k for k in devs[0] if k not in ("step", "epoch")]
        _plot(run_dir / "report_dev.png", {k: ([r["step"] for r in devs], [r[k] for r in devs]) for k in keys},
              "Spearman ×100", "dev scores")
        out += ["![dev scores](report_dev.png)", ""]
    return out


def _eval_section(eval_dir: Path, base_dir: Path | None = None) -> list[str]:
    """The trained model's table; with eval.compare_base, the encoder before training (`base_dir`, default
    <eval_dir>/base) in the row above it and the gain per task."""
    from syncse_ray.eval import render_table
    from syncse_ray.eval.results import load_results

    if not (eval_dir / "results.json").is_file():
        return []
    trained = load_results(eval_dir / "results.json")
    base_dir = base_dir or eval_dir / "base"
    if not (base_dir / "results.json").is_file():
        return ["## Evaluation", "", render_table(trained), ""]
    base = load_results(base_dir / "results.json")
    cached = " (cached scores)" if base.get("cached") else ""  # from the score cache: the same in every run
    base = {**base, "model": f"before training{cached}: {base['model']}"}
    trained = {**trained, "model": f"after training: {Path(trained['model']).name}"}
    scores = [{(r["protocol"], r["task"]): r["score"] for r in run["records"]} for run in (base, trained)]
    gains = [f"{task if task != 'avg' else 'average'} {scores[1][key] - scores[0][key]:+.2f}"
             for key in scores[1] if key in scores[0] for task in [key[1]]]
    note = [("The scores before training come from the score cache in the cache dir: an earlier run scored the "
             "same model files with the same pooler and precision on the same data, so this run did not."), ""]
    return ["## Evaluation", "", "Before and after training (same encoder, same pooler):", "",
            render_table([base, trained]), "", f"Gain from training: {', '.join(gains)}.", "",
            *(note if cached else [])]


def _rounds_section(record: dict[str, Any], run_dir: Path) -> list[str]:
    """pipeline.rounds > 1: one row per round and STS avg against round (report_rounds.png)."""
    rounds = record.get("rounds")
    if not rounds:
        return []

    def num(value: Any, fmt: str = "{:.2f}") -> str:
        return "–" if value is None else fmt.format(value)

    rows = [[r["round"], r.get("status", "–"), r.get("kept", "–"),
             num(r["same_as_round_1"] / r["kept"] if r.get("kept") else None, "{:.0%}"),
             num(r.get("round_1_judge_agreement"), "{:.0%}"),
             r.get("mined", "–") if r["round"] > 1 else "–", r.get("tokens", "–"), r.get("steps", "–"),
             num(r.get("dev_score")), num(r.get("sts_avg"))] for r in rounds]
    out = ["## Rounds", "",
           ("Round 1 synthesizes and its judge selects; each later round re-judges round 1's candidates with the "
           "encoder the round before trained and mines hard negatives for rows whose LLM negatives all fail. "
           f"The run's model is round {record.get('best_round', '?')}'s (best dev score)."), "",
           *_table(["round", "status", "kept triplets", "same triplet as round 1",
                    "round 1's judge agrees (LLM negatives)", "mined negatives",
                    "LLM output tokens", "training steps", "dev score", "STS avg"], rows)]
    scored = [r for r in rounds if r.get("sts_avg") is not None]
    if len(scored) > 1:
        _plot(run_dir / "report_rounds.png", {"STS avg": ([r["round"] for r in scored],
                                                          [r["sts_avg"] for r in scored])},
              "Spearman ×100", "STS avg by round", xlabel="round")
        out += ["![STS avg by round](report_rounds.png)", ""]
    return out


def _timing_section(record: dict[str, Any]) -> list[str]:
    stages = record.get("stages", {})
    if not stages:
        return []
    rows = [[name, s["status"], _seconds(s.get("work_seconds", s["seconds"])), _seconds(s["seconds"])]
            for name, s in stages.items()]
    total = sum(s.get("work_seconds", s["seconds"]) for s in stages.values())
    rows.append(["**total**", "", _seconds(total), ""])
    return ["## Wall time per stage", "",
            *_table(["stage", "this run", "time to produce the output", "time this run"], rows)]


def write_report(cfg: Config, record: dict[str, Any] | None = None) -> Path:
    """Write <run_dir>/report.md (and its plots) from the stage outputs; returns its path."""
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    record = record if record is not None else (_read_json(run_dir / "pipeline.json") or {})
    lines = [f"# Run report: {cfg.name}", "", f"Run folder `{run_dir.resolve()}`; config in `config.yaml`.", ""]
    lines += _timing_section(record)
    lines += _synth_section(cfg.stage_dir("synth"), run_dir)
    lines += _train_section(cfg.stage_dir("train"), run_dir)
    lines += _rounds_section(record, run_dir)
    lines += _eval_section(cfg.stage_dir("eval"), Path(record["base_eval"]) if record.get("base_eval") else None)
    path = run_dir / REPORT_FILE
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path
