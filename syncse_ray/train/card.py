"""The model card (README.md) of an exported model folder, written by sentence-transformers' own card machinery.
No Ray.

    facts = training_facts(cfg, data_path, table, plan, history)        # at the end of training (train/facts.py)
    export_sentence_transformer(..., metadata={..., "card": folder_facts(facts, metrics)})  # writes README.md
    update_model_card(model_dir, eval_dir)                              # after evaluation (eval/stage.py)

The card is `sentence_transformers.base.model_card.generate_model_card` on a `SentenceTransformerModelCardData`
filled from the training run (base model, the training data with its column statistics and samples, the loss,
every hyperparameter, the training log with the dev scores, the SentEval STS scores as evaluation metrics, so the
YAML front matter carries `model-index` the way the Hugging Face hub reads it), plus one section of our own,
"Trained with syncse-ray": where the data came from (the synthesis manifest: generator, judge, kept and dropped
rows), the loss in words, the STS table beside the paper's rows, and the config that made the model.

Everything the card needs is kept in the folder (`syncse_train.json`, key `card`: the facts of
`syncse_ray.train.facts`), so the card can be rewritten from the folder alone once the STS table is known. This
module renders; the facts are gathered in `facts.py`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from syncse_ray import __version__
from syncse_ray.io import CARD, write_text_atomic
from syncse_ray.train.facts import flatten, read_facts

log = logging.getLogger(__name__)

SECTION = "## Trained with syncse-ray"
_EVAL_STAMP = "<!-- syncse-ray eval results: {} -->"
STS_TASK_TYPE = "Semantic Similarity"  # sentence-transformers' EmbeddingSimilarityEvaluator description
STS_METRIC = "spearman_cosine"
CITATIONS = {
    "SynCSE": """@inproceedings{zhang-etal-2023-contrastive,
    title = "Contrastive Learning of Sentence Embeddings from Scratch",
    author = "Zhang, Junlei and Lan, Zhenzhong and He, Junxian",
    booktitle = "Proceedings of the 2023 Conference on Empirical Methods in Natural Language Processing",
    year = "2023",
    url = "https://arxiv.org/abs/2305.15077",
}""",
    "SimCSE": """@inproceedings{gao-etal-2021-simcse,
    title = "{S}im{CSE}: Simple Contrastive Learning of Sentence Embeddings",
    author = "Gao, Tianyu and Yao, Xingcheng and Chen, Danqi",
    booktitle = "Proceedings of the 2021 Conference on Empirical Methods in Natural Language Processing",
    year = "2021",
    url = "https://arxiv.org/abs/2104.08821",
}""",
}


# ---------------------------------------------------------------------------------------------------- card helpers


def _precision(train: dict[str, Any], facts: dict[str, Any]) -> str:
    """`bf16`, or `bf16 (auto)` where the config said auto and the run resolved it."""
    resolved = facts.get("precision")
    if train["precision"] == "auto" and resolved:
        return f"{resolved} (auto)"
    return str(resolved or train["precision"])


# ---------------------------------------------------------------------------------------------------- STS


class SentEvalSTS:
    """The SentEval "all" STS score of one task, computed by `syncse eval` (syncse_ray.eval.sts) and read
    back from results.json; shaped like a sentence-transformers evaluator so that the card data turns it into
    the card's metrics table and `model-index`."""

    description = STS_TASK_TYPE

    def __init__(self, task: str, score: float, n: int, protocol: str = "senteval-sts"):
        self.name, self.score, self.n, self.protocol = task, score, n, protocol
        self.primary_metric = f"{task}_{STS_METRIC}"

    def metrics(self) -> dict[str, float]:
        return {self.primary_metric: round(float(self.score), 2)}

    def get_config_dict(self) -> dict[str, Any]:
        return {"protocol": "SentEval \"all\" (syncse_ray.eval.sts)", "metric": "Spearman of cosine x 100",
                "pairs": self.n}


def sts_evaluators(results: dict[str, Any]) -> list[SentEvalSTS]:
    """One `SentEvalSTS` a task in the SentEval STS table order, then the average (`STS avg`)."""
    from syncse_ray.eval.results import AVG, STS_HEADERS

    records = {r["task"]: r for r in results.get("records", []) if r.get("protocol") == "senteval-sts"
               and r.get("score") is not None}
    out = [SentEvalSTS(header, records[task]["score"], records[task].get("n") or 0)
           for task, header in STS_HEADERS.items() if task in records]
    if AVG in records:
        out.append(SentEvalSTS("STS avg", records[AVG]["score"], records[AVG].get("n") or 0))
    return out


# ---------------------------------------------------------------------------------------------------- card


def _training_logs(history: list[dict[str, Any]], steps_per_epoch: int) -> list[dict[str, Any]]:
    rows: dict[int, dict[str, Any]] = {}
    for rec in history:
        step = rec.get("step")
        if step is None:
            continue
        row = rows.setdefault(step, {"Epoch": round(step / steps_per_epoch, 4) if steps_per_epoch else 0,
                                     "Step": step})
        if "epoch" in rec:
            row["Epoch"] = round(float(rec["epoch"]), 4)
        if "loss" in rec:
            row["Training Loss"] = round(float(rec["loss"]), 4)
        for key in ("stsb_dev", "sickr_dev", "dev_score"):
            if rec.get(key) is not None:
                row[key] = round(float(rec[key]), 2)
    return [rows[s] for s in sorted(rows)]


def _loss_name(train: dict[str, Any]) -> str:
    return "syncse_ray.train.losses.MatryoshkaLoss" if train.get("matryoshka_dims") else \
        "syncse_ray.train.losses.SimCSELoss"


def _loss_config(train: dict[str, Any]) -> dict[str, Any]:
    fn = train.get("false_negatives") or {}
    config: dict[str, Any] = {"objective": train["objective"], "temperature": train["temperature"],
                              "hard_negative_weight": train["hard_negative_weight"],
                              "gather_across_workers": True}
    if any(fn.get(k) is not None for k in ("mask_threshold", "mask_ratio", "decay_sigma")):
        config["false_negatives"] = {k: v for k, v in fn.items() if v is not None}
    if train.get("matryoshka_dims"):
        config["matryoshka_dims"] = train["matryoshka_dims"]
        config["matryoshka_weights"] = train.get("matryoshka_weights") or [1] * len(train["matryoshka_dims"])
    if train.get("mlm_weight"):
        config["mlm_weight"] = train["mlm_weight"]
    return config


def _dataset_info(model_card, facts: dict[str, Any]) -> dict[str, Any]:
    import datasets

    data = facts["data"]
    synthesis = data.get("synthesis")
    name = "syncse-ray synthetic triplets" if synthesis else Path(data["path"]).name
    info: dict[str, Any] = {"name": name}
    sample = data.get("sample") or []
    if sample:
        try:
            model_card.compute_dataset_metrics(datasets.Dataset.from_list(sample), info, None)
        except Exception as exc:  # the statistics are a nicety; the card is written without them
            log.warning("model card: no column statistics (%s: %s)", type(exc).__name__, exc, exc_info=True)
    info.pop("examples", None)
    info.pop("_example_columns", None)
    info["size"] = data["rows"]
    info.setdefault("columns", [f"<code>{c}</code>" for c in data["columns"]])
    config = json.dumps(_loss_config(facts["train"]), indent=4)
    info["loss"] = {"fullname": _loss_name(facts["train"]),
                    "config_code": "  ```json\n" + "\n".join("  " + line for line in config.splitlines())
                                   + "\n  ```"}
    return info


def _hyperparameters(facts: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    every = {**flatten(facts["train"]), **facts["derived"]}
    return every, {**facts["non_default"], "global_batch_size": facts["derived"]["global_batch_size"]}


def _fmt(value: Any) -> str:
    return "–" if value is None else (f"{value:.2f}" if isinstance(value, float) else str(value))


def _describe_loss(train: dict[str, Any]) -> str:
    cfg = _loss_config(train)
    if train["objective"] == "supervised":
        text = ("supervised SimCSE: InfoNCE over cosine similarities, each anchor against its positive, every "
                "other positive and every hard negative of the global batch (gathered across the workers)")
    else:
        text = ("unsupervised SimCSE: each sentence encoded twice with different dropout masks, the other "
                "sentences of the global batch as negatives")
    parts = [f"temperature {cfg['temperature']}"]
    if train["objective"] == "supervised":
        parts.append(f"hard-negative weight {cfg['hard_negative_weight']} (log weight on the anchor's own hard "
                     "negative)")
    fn = cfg.get("false_negatives")
    if fn:
        parts.append("false negatives: " + ", ".join(f"{k} {v}" for k, v in fn.items()))
    else:
        parts.append("false negatives: not handled (no guide)")
    if cfg.get("matryoshka_dims"):
        parts.append(f"Matryoshka prefixes {cfg['matryoshka_dims']} (weights {cfg['matryoshka_weights']})")
    if cfg.get("mlm_weight"):
        parts.append(f"auxiliary MLM loss × {cfg['mlm_weight']}")
    return f"{text}; {'; '.join(parts)}."


def _syncse_section(facts: dict[str, Any], results: dict[str, Any] | None, base: dict[str, Any] | None) -> str:
    from syncse_ray.eval.results import render_table

    train, d, data = facts["train"], facts["derived"], facts["data"]
    metrics = facts.get("checkpoint_metrics") or {}
    lines = [SECTION, "",
             (f"This folder is the `train/{facts.get('folder', 'best')}` export of a "
             f"syncse-ray {__version__} run "
             f"(SynCSE on Ray: an LLM writes the training data, Ray Train + {train['backend']} trains the encoder). "
             "The folder is the whole model: `SentenceTransformer(folder)` loads it with its pooler "
             f"(`{train['pooler']}`)."), "", "### Training data", ""]
    lines.append(f"- **Rows:** {data['rows']:,} ({', '.join(data['columns'])}) read from `{data['path']}`")
    syn = data.get("synthesis")
    if syn:
        lines.append(f"- **Synthesized** by syncse-ray (SynCSE-{syn.get('mode')}) with the generator LLM "
                     f"`{syn.get('generator')}`, {syn.get('candidates')} candidates per sentence and kind"
                     + (f", from `{syn['input']}`" if syn.get("input") else ""))
        judge = syn.get("judge") or {}
        if judge:
            lines.append("- **Judge:** " + ", ".join(f"{k} `{v}`" if k in ("method", "model") else f"{k} {v}"
                                                     for k, v in judge.items()))
        reasons = ", ".join(f"{n} `{r}`" for r, n in sorted(syn.get("drop_reasons", {}).items(),
                                                             key=lambda kv: -kv[1]))
        lines.append(f"- **Kept** {syn.get('kept')} of {syn.get('requested')} rows; dropped {syn.get('dropped')}"
                     + (f" ({reasons})" if reasons else ""))
        lines.append(f"- Dataset folder: `{syn['folder']}`" + (" (its README.md is the dataset card)"
                                                              if syn.get("dataset_card") else ""))
    lines += ["", "### Loss", "", f"{_describe_loss(train)}", "", "### Hyperparameters", ""]
    epochs = (f"{train['max_steps']} steps (max_steps)" if train.get("max_steps")
              else f"{train['epochs']} epoch(s) = {d['total_steps']} steps")
    zero = f" ZeRO-{train['deepspeed']['zero_stage']}" if train["backend"] == "deepspeed" else ""
    lines += [(f"- lr {train['lr']} (warmup {d['warmup_steps']} steps, linear decay), weight decay {train['weight_decay']}, "
              f"max grad norm {train['max_grad_norm']}"),
              f"- batch size {train['batch_size']} × {train['num_workers']} worker(s)"
              + (f" × {train['gradient_accumulation_steps']} accumulation steps" if train["gradient_accumulation_steps"] > 1
                 else "") + f" = {d['global_batch_size']} rows a step"
              + (f" (GradCache mini-batches of {train['mini_batch_size']})" if train.get("mini_batch_size") else ""),
              f"- {epochs}, {d['steps_per_epoch']} steps an epoch; dev evaluation every {train['eval_steps']} steps",
              (f"- max length {train['max_seq_length']} tokens in training; precision {_precision(train, facts)}; "
              f"{train['backend']}{zero}; {'GPU' if train['use_gpu'] else 'CPU'}; seed {train['seed']}"), "",
              "### Dev scores (model selection: mean of STS-B dev and SICK-R trial, Spearman ×100)", ""]
    lines += [(f"- this folder: step {metrics.get('step')}, STS-B dev {_fmt(metrics.get('stsb_dev'))}, "
              f"SICK-R trial {_fmt(metrics.get('sickr_dev'))}, dev score {_fmt(metrics.get('dev_score'))}"),
              f"- best step: {facts.get('best_step')}", ""]
    if results is not None:  # the STS table (with the paper's rows and the encoder before training), dev, ...
        lines += [render_table([results] + ([base] if base else [])).strip(), "",
                  _EVAL_STAMP.format(results.get("finished", "")), ""]
    else:
        lines += ["### STS (SentEval \"all\", Spearman ×100)", "",
                  ("Not evaluated yet: the pipeline's eval stage adds the table here (or run "
                  "`syncse eval <this folder> --tasks sts`)."), ""]
    lines += ["### How it was made", "",
              "```bash",
              "syncse pipeline config.yaml    # or: syncse train config.yaml (training only)",
              "```", "",
              f"with this resolved config (also `{facts.get('run_dir')}/config.yaml`):", "",
              "<details><summary>config.yaml</summary>", "", "```yaml", facts["config_yaml"].rstrip(), "```", "",
              "</details>", ""]
    return "\n".join(lines)


def render_model_card(model, facts: dict[str, Any], results: dict[str, Any] | None = None,
                      base: dict[str, Any] | None = None) -> str:
    """The README.md of `model` (a SentenceTransformer) from `facts` (`folder_facts`), with the STS table of
    `results` (results.json) beside `base` (the encoder before training) when given."""
    from sentence_transformers.base.model_card import generate_model_card
    from sentence_transformers.sentence_transformer.model_card import SentenceTransformerModelCardData

    train = facts["train"]
    base_name = (facts.get("base_model_hub_id") or facts["base_model"]).rstrip("/").rsplit("/", 1)[-1]
    card = SentenceTransformerModelCardData(language="en", local_files_only=True, generate_widget_examples=False,
                                            model_name=f"{base_name} trained with {train['objective']} SimCSE "
                                                       "(syncse-ray)")
    card.register_model(model)
    model.model_card_data = card
    card.base_model = facts.get("base_model_hub_id")  # no hub look-up (offline; a bundled model's origin)
    card.first_save = False
    card.add_tags(["syncse-ray", "simcse", f"loss:{_loss_name(train).rsplit('.', 1)[-1]}",
                   f"dataset_size:{facts['data']['rows']}"])
    card.train_datasets = [_dataset_info(card, facts)]
    card.all_hyperparameters, card.non_default_hyperparameters = _hyperparameters(facts)
    card.training_logs = _training_logs(facts.get("history") or [], facts["derived"]["steps_per_epoch"])
    card.best_model_step = (facts.get("checkpoint_metrics") or {}).get("step")
    card.citations = dict(CITATIONS)
    if results is not None:
        for evaluator in sts_evaluators(results):
            card.set_evaluation_metrics(evaluator, evaluator.metrics(), step=card.best_model_step or 0)
        # set_evaluation_metrics also logs the scores as a training-log row; they belong to the test set
        card.training_logs = _training_logs(facts.get("history") or [], facts["derived"]["steps_per_epoch"])
    text = generate_model_card(model)
    section = _syncse_section(facts, results, base)
    anchor = "\n## Training Details"
    if anchor in text:
        return text.replace(anchor, "\n" + section + anchor, 1)
    return text.rstrip() + "\n\n" + section


def write_model_card(model_dir: Path, model=None, results: dict[str, Any] | None = None,
                     base: dict[str, Any] | None = None) -> Path | None:
    """(Re)write `model_dir`/README.md from the facts in its syncse_train.json; None when the folder has no
    facts (not a syncse-ray export). `model`: the folder's SentenceTransformer, if already loaded."""
    facts = read_facts(model_dir)
    if facts is None:
        return None
    if model is None:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(model_dir), device="cpu")
    return write_text_atomic(Path(model_dir) / CARD, render_model_card(model, facts, results, base))


def update_model_card(model_dir: str | Path, eval_dir: Path) -> Path | None:
    """After evaluation: rewrite the card of `model_dir` (a syncse-ray export) with `eval_dir`/results.json (and
    `eval_dir`/base/results.json, the encoder before training, when present). Does nothing for a model that is
    not a syncse-ray folder, or whose card already holds these results; never fails the stage."""
    from syncse_ray.eval.results import load_results

    model_dir, eval_dir = Path(model_dir), Path(eval_dir)
    try:
        if not (eval_dir / "results.json").is_file() or read_facts(model_dir) is None:
            return None
        results = load_results(eval_dir / "results.json")
        card = model_dir / CARD
        if card.is_file() and _EVAL_STAMP.format(results.get("finished", "")) in card.read_text():
            return card
        base_file = eval_dir / "base" / "results.json"
        base = load_results(base_file) if base_file.is_file() else None
        return write_model_card(model_dir, results=results, base=base)
    except Exception as exc:  # a card is documentation: it must not fail a finished evaluation
        log.warning("could not update the model card of %s: %s: %s", model_dir, type(exc).__name__, exc,
                    exc_info=True)
        return None
