"""Evaluation results: the JSON record format and the Markdown table that puts a run beside the paper's rows.

A results file (``results.json``) is::

    {"model": "<reference>", "encoder": "<class>", "data_dir": "...", "started": "<ISO UTC>",
     "finished": "<ISO UTC>", "seconds": 12.3, "skipped": ["<message>", ...],
     "records": [{"model", "protocol", "task", "split", "metric", "score", "n", "data", "data_fingerprint",
                  "time", "seconds"}, ...]}

``protocol`` is one of ``senteval-sts`` (SentEval "all" STS, Spearman of cosine ×100), ``senteval-sts-dev``,
``senteval-transfer`` (accuracy ×100 of a logistic-regression probe), ``mteb-local`` (mteb on the local SentEval
files) or ``mteb-hub`` (mteb's own data); averages are records with ``task == "avg"``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from syncse_ray.data.senteval import STS_TEST_TASKS, TRANSFER_TASKS
from syncse_ray.io import markdown_table, write_text_atomic

AVG = "avg"
STS_HEADERS = {"STS12": "STS12", "STS13": "STS13", "STS14": "STS14", "STS15": "STS15", "STS16": "STS16",
               "STSBenchmark": "STS-B", "SICKRelatedness": "SICK-R"}

# SynCSE paper (Zhang, Lan & He 2023), RoBERTa-base, SentEval "all" STS, average of the seven tasks.
PAPER_STS_AVG: tuple[tuple[str, float], ...] = (
    ("unsup-SimCSE", 76.57),
    ("SynCSE-scratch", 80.75),
    ("SynCSE-partial", 81.94),
    ("sup-SimCSE", 82.52),
)


# Reference rows of the STS table: (label, scores by task in STS_TEST_TASKS order or None where no per-task
# number could be sourced, the average, the source). Every number is copied from a stored file, cited here:
#   hkust-nlp/SynCSE README.md (commit 0b2c0f494ff5f15a1b844e04a8bce9b556c81937), "Model Checkpoints" table
#   (averages of the released checkpoints) and "Evaluation" (the expected `scripts/eval.sh` output of the
#   released SynCSE-partial-RoBERTa-base: the seven tasks and the average). The README notes these differ
#   slightly from the paper's, the released data being cleaned of failed generations.
# Table 2 of the paper itself (per-task numbers, RoBERTa-large, BERT-base rows) is not reproduced in any stored
# source that could be read, so its rows keep only the averages above (PAPER_STS_AVG) and "–" per task.
RELEASED_SYNCSE_README = "hkust-nlp/SynCSE README (released checkpoints)"
REFERENCE_STS_ROWS: tuple[tuple[str, tuple[float, ...] | None, float, str], ...] = (
    *((f"{name}-RoBERTa-base (paper)", None, avg, "paper, average only") for name, avg in PAPER_STS_AVG),
    ("SynCSE-partial-RoBERTa-base (released)", (76.14, 84.41, 79.23, 84.85, 82.87, 83.95, 81.41), 81.84,
     RELEASED_SYNCSE_README),
    ("SynCSE-scratch-RoBERTa-base (released)", None, 80.66, RELEASED_SYNCSE_README),
    ("SynCSE-partial-RoBERTa-large (released)", None, 82.66, RELEASED_SYNCSE_README),
)


def combined_fingerprint(fingerprints: Iterable[str]) -> str:
    return hashlib.sha256("\0".join(fingerprints).encode()).hexdigest()[:16]


def average_record(records: Sequence[dict[str, Any]], protocol: str, expected: Sequence[str]) -> dict | None:
    """The mean of ``records`` of ``protocol`` (one per task), as an ``avg`` record; None unless every task in
    ``expected`` has a score (an average over a subset would not be comparable)."""
    rows = {r["task"]: r for r in records if r["protocol"] == protocol and r["task"] != AVG}
    if not expected or any(rows.get(t, {}).get("score") is None for t in expected):
        return None
    picked = [rows[t] for t in expected]
    first = picked[0]
    return {
        "model": first["model"], "protocol": protocol, "task": AVG, "split": first["split"],
        "metric": f"mean of {len(picked)}: {', '.join(expected)}",
        "score": sum(r["score"] for r in picked) / len(picked), "n": sum(r["n"] for r in picked),
        "data": "", "data_fingerprint": combined_fingerprint(r["data_fingerprint"] for r in picked),
        "time": max(r["time"] for r in picked), "seconds": sum(r["seconds"] for r in picked),
    }


def write_results(results: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``results.json`` and ``results.md`` into ``out_dir`` (each by temp file + rename)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return (write_text_atomic(out_dir / "results.json", json.dumps(results, indent=2)),
            write_text_atomic(out_dir / "results.md", render_table(results)))


def load_results(source: str | Path | dict[str, Any]) -> dict[str, Any]:
    if isinstance(source, dict):
        return source
    path = Path(source)
    return json.loads((path / "results.json" if path.is_dir() else path).read_text())


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _scores(run: dict[str, Any], protocol: str) -> dict[str, float | None]:
    return {r["task"]: r["score"] for r in run["records"] if r["protocol"] == protocol}


def sts_scores(source: str | Path | dict[str, Any]) -> dict[str, float]:
    """The SentEval STS scores of a results file (or dict): task -> score, "avg" among them when all seven ran;
    {} when the file is not there."""
    if not isinstance(source, dict) and not Path(source).exists():
        return {}
    return _scores(load_results(source), "senteval-sts")


def sts_average(source: str | Path | dict[str, Any]) -> float | None:
    """One number for an evaluation's STS: SentEval's "avg" (`average_record`: every one of the seven tasks) when
    it has one, else the mean of the STS tasks it ran, so runs that evaluate the same subset (the rounds of one
    run) can be compared; None without STS scores."""
    sts = sts_scores(source)
    if AVG in sts:
        return sts[AVG]
    return sum(sts.values()) / len(sts) if sts else None


def render_table(results: str | Path | dict[str, Any] | Sequence[str | Path | dict[str, Any]]) -> str:
    """Markdown for one or more results (dicts, results.json paths or run folders): the SentEval STS table with
    the paper's RoBERTa-base rows, then dev, transfer and MTEB tables for whatever the runs contain."""
    runs = [load_results(r) for r in (results if isinstance(results, (list, tuple)) else [results])]
    out: list[str] = []

    sts_runs = [run for run in runs if _scores(run, "senteval-sts")]
    if sts_runs:
        header = ["model", *STS_HEADERS.values(), "Avg."]
        rows = []
        for run in sts_runs:
            s = _scores(run, "senteval-sts")
            rows.append([f"`{run['model']}`", *(_fmt(s.get(t)) for t in STS_TEST_TASKS), _fmt(s.get(AVG))])
        for label, per_task, avg, _ in REFERENCE_STS_ROWS:
            cells = [_fmt(v) for v in per_task] if per_task else ["–"] * len(STS_TEST_TASKS)
            rows.append([label, *cells, _fmt(avg)])
        out += ["### STS (SentEval \"all\" protocol, Spearman of cosine ×100; SICK-R: 4,927 test pairs)", "",
                *markdown_table(header, rows), "",
                ("Reference rows: *(paper)* SynCSE (Zhang, Lan & He 2023), RoBERTa-base, average of the seven STS "
                 "tasks; *(released)* the authors' released checkpoints as their README (hkust-nlp/SynCSE) reports "
                 "them, per task where it gives them (trained on the cleaned data, so slightly off the paper)."),
                ""]

    dev_runs = [run for run in runs if _scores(run, "senteval-sts-dev")]
    if dev_runs:
        rows = [[f"`{run['model']}`", _fmt(_scores(run, "senteval-sts-dev").get("stsb_dev")),
                 _fmt(_scores(run, "senteval-sts-dev").get("sickr_dev"))] for run in dev_runs]
        out += ["### STS dev (model selection; Spearman of cosine ×100)", "",
                *markdown_table(["model", "STS-B dev", "SICK-R trial"], rows), ""]

    transfer_runs = [run for run in runs if _scores(run, "senteval-transfer")]
    if transfer_runs:
        rows = []
        for run in transfer_runs:
            s = _scores(run, "senteval-transfer")
            rows.append([f"`{run['model']}`", *(_fmt(s.get(t)) for t in TRANSFER_TASKS), _fmt(s.get(AVG))])
        out += ["### Transfer (SentEval, logistic-regression probe, accuracy ×100)", "",
                *markdown_table(["model", *TRANSFER_TASKS, "Avg."], rows), ""]

    mteb_rows = [[f"`{run['model']}`", r["task"], r["split"], r["metric"], r["protocol"], _fmt(r["score"])]
                 for run in runs for r in run["records"] if r["protocol"].startswith("mteb")]
    if mteb_rows:
        out += ["### MTEB (main score ×100; mteb-local: fed from the SentEval files, SICK-R on all ~9.9k pairs)",
                "", *markdown_table(["model", "task", "split", "metric", "protocol", "score"], mteb_rows, text_columns=5), ""]

    skipped = [msg for run in runs for msg in run.get("skipped", [])]
    if skipped:
        out += ["Skipped:", "", *(f"- {msg}" for msg in skipped), ""]
    return "\n".join(out)
