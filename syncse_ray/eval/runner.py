"""``run_eval``: one model, a list of task specs, one results JSON + Markdown table.

Task specs:

- ``sts``: the seven SentEval-protocol STS test sets and their average; ``sts:<name>`` for one of
  STS12 … STS16, STSBenchmark, SICKRelatedness;
- ``sts-dev``: STS-B dev and SICK-R trial (what training selects models on);
- ``transfer``: MR, CR, SUBJ, MPQA, SST2, TREC, MRPC (absent data folders are skipped); ``transfer:<name>``;
- ``rerank``: the SynCSE paper's four reranking sets through mteb (MAP@1000): AskUbuntuDupQuestions,
  MindSmallReranking, SciDocsRR, StackOverflowDupQuestions; ``rerank:<name>``. Offline each is read from
  ``<data_dir>/mteb/<task>/`` (``syncse data fetch --rerank``); a set that is not there is skipped, as transfer sets are;
- ``mteb:<task>``: any mteb task name, or the groups ``mteb:sts`` and ``mteb:reranking``.

Every task's data is read (and every mteb name checked) before the model is loaded, so a bad data directory or
task name fails in seconds with a message naming the file or task.

With ``score_cache=True`` the SentEval tasks' scores are looked up in the user cache first (``score_cache.py``:
keyed by the model's files, pooler, precision, batch size, data files and scoring code); a task found there is not scored
again, its record says ``"cached": true``, and when every task is found the model is not even loaded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from syncse_ray.data.datadir import default_data_dir
from syncse_ray.data.senteval import (
    STS_TEST_TASKS,
    TRANSFER_TASKS,
    StsData,
    TransferData,
    TransferSkipped,
    read_sick,
    read_sts_test,
    read_stsb,
    read_transfer,
)
from syncse_ray.errors import SyncseError
from syncse_ray.eval.mteb_tasks import (
    MTEB_GROUPS,
    expand_task_names,
    get_mteb_task,
    local_repo,
    repo_folder,
    run_mteb,
    uses_hub,
)
from syncse_ray.eval.results import average_record, write_results
from syncse_ray.eval.score_cache import ScoreCache, encoder_identity, score_key
from syncse_ray.eval.sts import spearman_cosine
from syncse_ray.eval.transfer import featurize, probe_accuracy
from syncse_ray.models.encoders import DEFAULT_BATCH_SIZE, CachedEncoder, Encoder, load_encoder

log = logging.getLogger("syncse_ray.eval")


class EvalError(SyncseError, ValueError):
    """A task spec that names nothing known; the message lists what is."""


RERANK_TASKS = MTEB_GROUPS["reranking"]
TASK_SPEC_HELP = (f"sts, sts:<{'|'.join(STS_TEST_TASKS)}>, sts-dev, transfer, transfer:<{'|'.join(TRANSFER_TASKS)}>, "
                  f"rerank, rerank:<{'|'.join(RERANK_TASKS)}>, mteb:<any mteb task | {'|'.join(MTEB_GROUPS)}>")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def parse_tasks(specs: Sequence[str]) -> dict[str, list[str]]:
    """Task specs -> {"sts": [...], "sts-dev": [...], "transfer": [...], "rerank": [...], "mteb": [...]} (order
    kept, no repeats)."""
    plan: dict[str, list[str]] = {"sts": [], "sts-dev": [], "transfer": [], "rerank": [], "mteb": []}
    rerank_names = {t.lower(): t for t in RERANK_TASKS}

    def add(kind: str, names: Sequence[str]) -> None:
        plan[kind] += [n for n in names if n not in plan[kind]]

    for spec in specs:
        kind, _, name = spec.strip().partition(":")
        kind = kind.lower()
        if kind == "sts" and not name:
            add("sts", STS_TEST_TASKS)
        elif kind == "sts" and name in STS_TEST_TASKS:
            add("sts", [name])
        elif kind == "sts-dev" and not name:
            add("sts-dev", ["stsb_dev", "sickr_dev"])
        elif kind == "transfer" and not name:
            add("transfer", TRANSFER_TASKS)
        elif kind == "transfer" and name.upper().replace("-", "") in TRANSFER_TASKS:
            add("transfer", [name.upper().replace("-", "")])
        elif kind == "rerank" and not name:
            add("rerank", RERANK_TASKS)
        elif kind == "rerank" and name.lower() in rerank_names:
            add("rerank", [rerank_names[name.lower()]])
        elif kind == "mteb" and name:
            add("mteb", expand_task_names([name]))
        else:
            raise EvalError(f"unknown task {spec!r}; use {TASK_SPEC_HELP}")
    return plan


def _sts_record(model: str, protocol: str, task: str, data: StsData, encoder: Encoder,
                show_progress: bool) -> dict[str, Any]:
    start = time.perf_counter()
    emb = encoder.encode(data.s1 + data.s2, show_progress=show_progress)  # one pass over both sides
    score = spearman_cosine(emb[:len(data.s1)], emb[len(data.s1):], data.gold)
    log.info("%s %s: %.2f (%d pairs)", protocol, task, score, len(data.gold))
    return {"model": model, "protocol": protocol, "task": task, "split": data.split,
            "metric": "spearman_cosine", "score": score, "n": len(data.gold), "data": _sts_label(data),
            "data_fingerprint": data.fingerprint(), "time": _now(), "seconds": time.perf_counter() - start}


def _sts_label(data: StsData) -> str:
    return ", ".join(str(p) for p in data.files[:2]) + (" ..." if len(data.files) > 2 else "")


def _transfer_record(model: str, data: TransferData, embed: Callable[[Sequence[str]], np.ndarray],
                     kfold: int) -> dict[str, Any]:
    start = time.perf_counter()
    score = probe_accuracy(featurize(embed, data), data.labels, kfold=kfold)
    split = "test" if "test" in data.labels else f"{kfold}-fold"
    n = sum(len(y) for y in data.labels.values())
    log.info("senteval-transfer %s: %.2f (%d examples)", data.task, score, n)
    return {"model": model, "protocol": "senteval-transfer", "task": data.task, "split": split,
            "metric": "accuracy", "score": score, "n": n, "data": str(data.files[0].parent),
            "data_fingerprint": data.fingerprint(), "time": _now(), "seconds": time.perf_counter() - start}


def run_eval(model: str | Encoder, tasks: Sequence[str] = ("sts",), data_dir: str | Path | None = None,
             out_dir: str | Path | None = None, *, pooler: str | None = None,
             batch_size: int = DEFAULT_BATCH_SIZE, max_seq_length: int | None = None,
             served_model: str | None = None, mteb_source: str = "auto", kfold: int = 10,
             cache_dir: Path | None = None, show_progress: bool = True,
             progress: Callable[[int, int, str], None] | None = None, precision: str = "auto",
             score_cache: bool = False) -> dict[str, Any]:
    """Evaluate ``model`` on ``tasks`` (module docstring) and return the results dict (``results.py``); with
    ``out_dir``, also write ``results.json`` and ``results.md`` there. ``progress(done, total, task)`` is called
    before the first task and after each one.

    ``model`` is a reference for ``load_encoder`` (folder, ``bundled:<name>``, hub name, ``http(s)://…/v1``
    endpoint) or an already loaded ``Encoder``. Each distinct sentence is encoded once per call.

    ``score_cache``: read and write the SentEval tasks' scores in ``<cache_dir>/scores`` (``score_cache.py``; a
    model reference only, never an endpoint). Use it for models that cannot change under their name, or where
    the cache is wanted: the key holds a content hash of the folder, so changed weights are always a miss."""
    plan = parse_tasks(tasks)
    data_dir = default_data_dir() if data_dir is None else data_dir
    started, t0 = _now(), time.perf_counter()
    skipped: list[str] = []

    # Read every data file and check every mteb name before loading the model.
    sts_data = {name: read_sts_test(data_dir, name) for name in plan["sts"]}
    dev_data = {name: (read_stsb(data_dir, "dev") if name == "stsb_dev" else read_sick(data_dir, "dev"))
                for name in plan["sts-dev"]}
    transfer_data: list[TransferData] = []
    for name in plan["transfer"]:
        try:
            transfer_data.append(read_transfer(data_dir, name))
        except TransferSkipped as exc:
            log.warning("%s", exc)
            skipped.append(str(exc))
    for name in plan["mteb"]:
        get_mteb_task(name)
    # where mteb's data comes from, decided once (auto: a probe of the hub); offline, a reranking set not in the data
    # dir is skipped (as transfer sets are) and named in `skipped`
    source = ("hub" if uses_hub(mteb_source) else "local") if plan["rerank"] or plan["mteb"] else mteb_source
    missing = [n for n in plan["rerank"] if source == "local" and local_repo(data_dir, n) is None]
    for task in missing:
        reason = (f"rerank {task}: skipped, {repo_folder(data_dir, task)} is missing (`syncse data fetch "
                  f"--rerank` fetches it; or --mteb-source hub)")
        log.warning("%s", reason)
        skipped.append(reason)
    plan["rerank"] = [n for n in plan["rerank"] if n not in missing]

    name = model if isinstance(model, str) else model.name
    identity = None
    if score_cache and isinstance(model, str):
        identity = encoder_identity(model, pooler=pooler, precision=precision, max_seq_length=max_seq_length,
                                    batch_size=batch_size, cache_dir=cache_dir)
    cache = ScoreCache.in_cache_dir(cache_dir) if identity is not None else None
    # Each cacheable task: (protocol, task) -> (data label, data fingerprint); all looked up before any loading.
    cacheable = {**{("senteval-sts", t): (_sts_label(d), d.fingerprint()) for t, d in sts_data.items()},
                 **{("senteval-sts-dev", t): (_sts_label(d), d.fingerprint()) for t, d in dev_data.items()},
                 **{("senteval-transfer", d.task): (str(d.files[0].parent), d.fingerprint())
                    for d in transfer_data}}
    keys = {} if cache is None else {
        (protocol, task): score_key(identity, protocol=protocol, task=task, data_fingerprint=fp, kfold=kfold)
        for (protocol, task), (_, fp) in cacheable.items()}
    hits = {pt: entry for pt, key in keys.items() if (entry := cache.get(key)) is not None}  # type: ignore[union-attr]
    all_cached = bool(hits) and len(hits) == len(cacheable) and not plan["mteb"] and not plan["rerank"]

    encoder: CachedEncoder | None = None
    if not all_cached:  # the model is loaded only when some task has to be scored
        loaded: Encoder = model if not isinstance(model, str) else load_encoder(
            model, pooler=pooler, batch_size=batch_size, max_seq_length=max_seq_length,
            served_model=served_model, cache_dir=cache_dir, precision=precision)
        encoder = loaded if isinstance(loaded, CachedEncoder) else CachedEncoder(loaded)
    inner = getattr(encoder, "inner", encoder)
    key_precision = identity["precision"] if identity else None
    if cache is not None and inner is not None and key_precision != "checkpoint" \
            and getattr(inner, "precision", key_precision) != key_precision:  # cannot happen: one resolver
        log.warning("score cache: the encoder runs in %s, not %s as its key says; its scores are not stored",
                    getattr(inner, "precision", None), key_precision)
        cache = None

    def cached(protocol: str, task: str) -> dict[str, Any] | None:
        """The task's record from the score cache (marked `cached`), or None."""
        entry = hits.get((protocol, task))
        if entry is None:
            return None
        label, fingerprint = cacheable[(protocol, task)]
        rec = {**entry["record"], "model": name, "data": label, "data_fingerprint": fingerprint, "cached": True}
        log.info("%s %s: %.2f (cached)", protocol, task, rec["score"])
        return rec

    def stored(rec: dict[str, Any]) -> dict[str, Any]:
        """`rec`, just scored, after storing it in the score cache."""
        if cache is not None:
            cache.put(keys[(rec["protocol"], rec["task"])], rec, type(inner).__name__)
        return rec

    total = len(sts_data) + len(dev_data) + len(transfer_data) + len(plan["rerank"]) + len(plan["mteb"])
    order = [*sts_data, *dev_data, *(d.task for d in transfer_data), *plan["rerank"], *plan["mteb"]]

    def tick(done: int) -> None:  # the task now running (the last one done at the end)
        if progress:
            progress(done, total, order[min(done, total - 1)] if order else "")

    tick(0)
    records: list[dict[str, Any]] = []
    for task, data in sts_data.items():
        records.append(cached("senteval-sts", task)
                       or stored(_sts_record(name, "senteval-sts", task, data, encoder, show_progress)))
        tick(len(records))
    if sts_data:
        avg = average_record(records, "senteval-sts", STS_TEST_TASKS)
        if avg:
            records.append(avg)
            log.info("senteval-sts avg of 7: %.2f", avg["score"])
    done = len(sts_data)
    for task, data in dev_data.items():
        records.append(cached("senteval-sts-dev", task)
                       or stored(_sts_record(name, "senteval-sts-dev", task, data, encoder, show_progress)))
        done += 1
        tick(done)
    transfer_records = []
    for data in transfer_data:
        transfer_records.append(cached("senteval-transfer", data.task) or stored(_transfer_record(
            name, data, lambda s: encoder.encode(s, show_progress=show_progress), kfold)))
        done += 1
        tick(done)
    records += transfer_records
    if transfer_records:
        avg = average_record(transfer_records, "senteval-transfer", [r["task"] for r in transfer_records])
        avg["metric"] = f"mean of the {len(transfer_records)} tasks run"
        records.append(avg)
    for task in [*plan["rerank"], *plan["mteb"]]:
        for rec in run_mteb(encoder, [task], data_dir, source=source, batch_size=batch_size,
                            show_progress=show_progress, cache_dir=cache_dir):
            log.info("%s %s %s: %.2f", rec["protocol"], rec["task"], rec["split"], rec["score"])
            records.append({"model": name, **rec})
        done += 1
        tick(done)

    if inner is not None:
        encoder_class, used_precision = type(inner).__name__, getattr(inner, "precision", None)
    else:  # every score came from the cache
        encoder_class, used_precision = next(iter(hits.values()))["encoder"], identity["precision"]  # type: ignore[index]
    results = {"model": name, "encoder": encoder_class, "precision": used_precision,
               "data_dir": str(data_dir), "tasks": list(tasks), "started": started, "finished": _now(),
               "seconds": time.perf_counter() - t0, "skipped": skipped, "records": records,
               # cached: no task was scored (the model was not loaded); cached_tasks: those read from the cache
               "cached": all_cached, "cached_tasks": [task for _, task in hits]}
    if out_dir is not None:
        write_results(results, out_dir)
    return results
