"""The dataset card (README.md) of a synth folder, from its files. Pure: no Ray, no vLLM.

    write_dataset_card(Path("runs/quickstart/synth"))

The YAML front matter is `huggingface_hub.DatasetCardData` for a Parquet dataset: `configs` map the folder's
Parquet parts (default: `data/`, the kept triplets; `dropped`, `candidates`, and for scratch runs
`scratch_sentences`, `scratch_dropped`) so that `datasets.load_dataset(<folder>)` and
`load_dataset(<folder>, "dropped")` read exactly those files (never `work/`'s staged chunks). The body says what
the rows are (columns and their meaning, from `syncse_ray.synth.layout.COLUMN_MEANINGS`), how many were kept and
dropped by reason (`manifest.json`, `stats.json`), which generator and judge made them, the instructions the LLM
was given (`syncse_ray.synth.prompts`, as configured) and the seed data's licence.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from syncse_ray.io import CARD, write_text_atomic
from syncse_ray.synth.layout import (
    CANDIDATE_SCHEMA,
    COLUMN_MEANINGS,
    SENTENCE_DROPPED_SCHEMA,
    SENTENCE_SCHEMA,
    TRIPLET_DROPPED_SCHEMA,
    TRIPLET_SCHEMA,
    Layout,
)

# config name -> (folder, schema, meanings key, what a row is)
CONFIGS: dict[str, tuple[str, Any, str, str]] = {
    "default": ("data", TRIPLET_SCHEMA, "data", "kept triplets (sent0 anchor, sent1 positive, hard_neg)"),
    "dropped": ("dropped", TRIPLET_DROPPED_SCHEMA, "dropped", "rows without a verified triplet, with the reason"),
    "candidates": ("candidates", CANDIDATE_SCHEMA, "candidates",
                   "every candidate the LLM wrote: filter reason, judge scores, selected or not"),
    "scratch_sentences": ("scratch/sentences", SENTENCE_SCHEMA, "sentences",
                          "scratch phase 1: the sentences the LLM wrote (the anchors)"),
    "scratch_dropped": ("scratch/dropped", SENTENCE_DROPPED_SCHEMA, "sentences_dropped",
                        "scratch phase 1: written sentences that were dropped, with the reason"),
}
# The seed data's licence, by a word in the input path (the shared data README lists these).
SEED_LICENCES: tuple[tuple[str, str, str], ...] = (
    ("snli", "cc-by-sa-4.0", "SNLI (Bowman et al. 2015): CC BY-SA 4.0"),
    ("multinli", "cc-by-sa-3.0", "MultiNLI: mostly CC BY-SA 3.0 (see its data description)"),
    ("nli", "cc-by-sa-4.0", "NLI premises (SNLI / MultiNLI): CC BY-SA"),
    ("wiki", "cc-by-sa-3.0", "Wikipedia text (SimCSE's wiki1m sample): CC BY-SA"),
)


def seed_licence(mode: str, input_path: str | None) -> tuple[str, str]:
    """(hub licence id, a sentence) for the anchors' source."""
    if mode == "scratch":
        return "unknown", ("No seed data: the generator LLM wrote the sentences from the packaged genres and "
                           "topics. The rows are the generator's output: check its licence and terms of use.")
    name = (input_path or "").lower()
    for word, licence, text in SEED_LICENCES:
        if word in name:
            return licence, (f"Anchors (`sent0`) come from `{input_path}`: {text}. Positives and hard negatives "
                             "are the generator LLM's output: check its licence and terms of use as well.")
    return "unknown", (f"Anchors (`sent0`) come from `{input_path}`, whose licence is not known to syncse-ray: "
                       "add it here before sharing. Positives and hard negatives are the generator LLM's output.")


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return name
    return "10M<n<100M"


def _rows(folder: Path) -> int | None:
    import pyarrow.parquet as pq

    parts = sorted(folder.glob("part-*.parquet"))
    return sum(pq.read_metadata(p).num_rows for p in parts) if parts else None


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    from syncse_ray.io import markdown_table

    return markdown_table(header, [[str(c).replace("|", "\\|") for c in row] for row in rows],
                          text_columns=len(header))


def _instructions(synth: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    from syncse_ray.synth.prompts import load_prompt_pack

    pack = load_prompt_pack(str(synth["prompt_dir"]) if synth.get("prompt_dir") else None)
    kinds = ["positive", "hard_negative"] + (["scratch"] if synth.get("mode") == "scratch" else [])
    return {k: [(i.id, i.text) for i in pack.instructions[k]] for k in kinds}


def _thresholds(judge: dict[str, Any]) -> list[str]:
    method = str(judge.get("method"))
    names = (["min_positive", "max_positive", "min_negative", "margin", "relative_margin"] if "embedding" in method
             else []) + (["llm_min_entailment", "llm_min_contradiction"] if "llm" in method else [])
    return [k for k in names if k in judge]


def _where(manifest: dict) -> str:
    """Where the writer ran: the resolved model folder (in-process vLLM) or the endpoint (OpenAI-compatible)."""
    writer = manifest.get("writer") or {}
    if writer.get("kind") == "openai":
        return f"through the OpenAI-compatible endpoint `{writer.get('endpoint')}`"
    return f"`{manifest.get('model_path')}`"


def _endpoint_cost(manifest: dict) -> str:
    """The endpoint writer's retries and, when prices were set, the run's cost in USD."""
    writer = manifest.get("writer") or {}
    if writer.get("kind") != "openai":
        return ""
    text = f", {writer.get('http_requests', 0):,} HTTP requests ({writer.get('retries', 0):,} retries)"
    if writer.get("cost_usd") is not None:
        text += f", about ${writer['cost_usd']:.4f} at the configured prices"
    return text


def render_dataset_card(root: Path) -> str:
    """The README.md of the synth folder `root` (manifest.json and the Parquet parts must exist)."""
    from huggingface_hub import DatasetCard, DatasetCardData

    layout = Layout(root)
    root = layout.root
    manifest = json.loads(layout.manifest.read_text())
    stats = json.loads(layout.stats.read_text()) if layout.stats.is_file() else {}
    synth = (manifest.get("config") or {}).get("synth") or {}
    mode = manifest.get("mode") or synth.get("mode") or "partial"
    annotate = manifest["phases"]["annotate"]
    judge = synth.get("judge") or {}
    counts = {name: _rows(root / folder) for name, (folder, *_rest) in CONFIGS.items()}
    present = [name for name, n in counts.items() if n is not None]
    licence, licence_text = seed_licence(mode, synth.get("input"))
    kept = counts.get("default") or 0

    card_data = DatasetCardData(
        pretty_name=f"SynCSE-{mode} triplets by {manifest.get('model')} (syncse-ray)",
        language=["en"], license=licence,
        annotations_creators=["machine-generated"],
        language_creators=["machine-generated"] if mode == "scratch" else ["found", "machine-generated"],
        multilinguality=["monolingual"], size_categories=[_size_category(kept)],
        source_datasets=["original"] if mode == "scratch" else ["extended"],
        task_categories=["sentence-similarity"],
        tags=["syncse-ray", "synthetic", "simcse", "sentence-embeddings", "contrastive-learning"],
        configs=[{"config_name": name, **({"default": True} if name == "default" else {}),
                  "data_files": [{"split": "train", "path": f"{CONFIGS[name][0]}/*.parquet"}]}
                 for name in present],
    )

    gen = manifest.get("model")
    lines = [f"# {card_data.pretty_name}", "",
             (f"Contrastive sentence triplets written by an LLM with syncse-ray (SynCSE, Zhang, Lan & He 2023): for each anchor sentence the generator `{gen}` wrote "
             f"{synth.get('candidates')} candidate positives (a paraphrase or something entailed) and hard "
             "negatives (a minimal edit that contradicts it); a judge scored them and the best positive was kept "
             "with the hardest negative that stays below it by a margin. Rows without a valid pair, and anchors "
             "that match an evaluation sentence, are in `dropped/` with their reason."), "",
             "```python",
             "from datasets import load_dataset",
             f'triplets = load_dataset("{root}")              # data/: sent0, sent1, hard_neg + provenance',
             f'dropped = load_dataset("{root}", "dropped")   # configs: {", ".join(present)}',
             "```", "",
             ("Training on it: `syncse train` with `train.data` set to this folder's `data/` (the default inside a "
             "run), or any loader of `sent0, sent1, hard_neg` (SimCSE's supervised NLI format)."), "",
             "## How it was made", ""]
    lines += [f"- **Mode:** SynCSE-{mode}"
              + (f", anchors from `{synth.get('input')}`" + (f" (first {synth['limit']} rows)" if synth.get("limit")
                                                              else "") if mode == "partial" else
                 f", {synth.get('scratch', {}).get('num_requests')} sentence-writing requests"),
              (f"- **Generator LLM:** `{gen}` ({_where(manifest)}), {synth.get('num_exemplars')} "
              f"few-shot exemplars a request, sampling: positives "
              f"{json.dumps(synth.get('positive_sampling'))}, hard negatives "
              f"{json.dumps(synth.get('hard_negative_sampling'))}"),
              "- **Judge:** " + (f"`{judge.get('method')}`" + (f" with `{judge.get('model')}`" if "embedding" in
                                                               str(judge.get("method")) else "")
                                 + ", thresholds: " + ", ".join(f"{k} {judge[k]}" for k in _thresholds(judge))),
              (f"- **Decontamination:** {json.dumps(synth.get('decontamination'))} (STS12–16, STS-B, SICK-R "
              "sentences)"),
              (f"- **Cost:** {annotate.get('requests')} requests, {annotate.get('candidates')} candidates, "
              f"{manifest.get('prompt_tokens'):,} prompt / {manifest.get('output_tokens'):,} output tokens, "
              f"{manifest.get('judge_tokens', 0):,} judge tokens, {manifest.get('wall_seconds', 0):.0f} s"
              + _endpoint_cost(manifest)),
              f"- **Config fingerprint:** `{manifest.get('fingerprint')}` (the whole config: `manifest.json`)", ""]

    reasons = annotate.get("drop_reasons") or {}
    lines += ["## Counts", "",
              (f"**{annotate.get('kept')} kept** of {manifest.get('requested')} rows, {annotate.get('dropped')} "
              "dropped:"), "",
              *_table(["reason", "rows"], [[f"`{r}`", n] for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])]
                      or [["–", 0]]), ""]
    if "sentences" in manifest["phases"]:
        s = manifest["phases"]["sentences"]
        lines += [(f"Scratch phase 1: {s.get('kept')} sentences written and kept, {s.get('dropped')} dropped "
                  f"({', '.join(f'{n} `{r}`' for r, n in (s.get('drop_reasons') or {}).items()) or 'none'})."), ""]
    js = stats.get("judge") or {}
    if js.get("scored_rows"):
        lines += [(f"Under the judge that selected them ({js['scored_rows']} rows scored): mean cosine "
                  f"anchor–positive {js.get('mean_pos', 0):.3f}, anchor–negative {js.get('mean_neg', 0):.3f}; "
                  f"positive above negative in {100 * js.get('agreement', 0):.1f}% of rows; "
                  f"{js.get('candidates_per_kept') or 0:.2f} candidates and {js.get('tokens_per_kept') or 0:.0f} "
                  "tokens per kept row."), ""]
    div = stats.get("diversity") or {}
    if div:
        lines += ["Diversity (sampled rows): " + "; ".join(
            f"`{c}` distinct-2 {d['distinct_2']:.3f}, duplicate rate {d['duplicate_rate']:.3f}"
            for c, d in div.items()) + ".", ""]

    lines += ["## Configs and files", "",
              *_table(["config", "files", "rows", "what"],
                      [[f"`{n}`", f"`{CONFIGS[n][0]}/*.parquet`", counts[n], CONFIGS[n][3]] for n in present]),
              "", ("`manifest.json` (counts, tokens, the resolved config), `stats.json` (drops, diversity, judge "
              "scores) and `stage.json` (completion marker) sit beside them; `work/` holds the staged input "
              "chunks (for resuming) and is not part of the dataset."), "", "## Columns", ""]
    for name in present:
        _folder, schema, key, _what = CONFIGS[name]
        meanings = COLUMN_MEANINGS[key]
        lines += [f"### `{name}`", "",
                  *_table(["column", "type", "meaning"],
                          [[f"`{f.name}`", f"`{f.type}`", meanings.get(f.name, "")] for f in schema]), ""]

    lines += ["## Prompts", "",
              "Each request's system turn is one instruction, drawn (seeded) from the pool of its kind, followed "
              f"by {synth.get('num_exemplars')} exemplar turns and the anchor"
              + (f"; prompt files from `{synth['prompt_dir']}`" if synth.get("prompt_dir") else
                 " (the packaged prompt files, `syncse_ray/synth/data/`)") + ".", ""]
    for kind, items in _instructions({**synth, "mode": mode}).items():
        lines += [f"**{kind}**", "", *_table(["id", "instruction"], [[f"`{i}`", text] for i, text in items]), ""]

    lines += ["## Licence", "", licence_text, "",
              "## Citation", "", "```bibtex",
              "@inproceedings{zhang-etal-2023-contrastive,",
              '    title = "Contrastive Learning of Sentence Embeddings from Scratch",',
              '    author = "Zhang, Junlei and Lan, Zhenzhong and He, Junxian",',
              ('    booktitle = "Proceedings of the 2023 Conference on Empirical Methods in Natural Language '
              'Processing",'),
              '    year = "2023",',
              '    url = "https://arxiv.org/abs/2305.15077",',
              "}", "```", ""]
    return str(DatasetCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(lines)))


def write_dataset_card(root: Path) -> Path:
    """Write `root`/README.md (atomically); returns its path."""
    return write_text_atomic(Path(root) / CARD, render_dataset_card(root))
