"""MTEB tasks through a proper mteb model wrapper, online (mteb's own hub loading) or offline (local SentEval files).

Any task name mteb knows can be run; ``sts`` and ``reranking`` name the groups the SynCSE paper reports.
Scores are mteb's main score ×100 (``cosine_spearman`` for STS, ``map_at_1000`` for reranking).

Offline, the STS tasks are fed from the SentEval files in the data directory (the task's dataset is set before
``mteb.evaluate`` sees it, so mteb does not try the hub):

- STS12–STS16: every scored pair of the year (the same pairs as mteb's hub copies: 3108/1500/3750/3000/1186);
- STSBenchmark: ``sts-test.csv`` (1,379 pairs);
- SICK-R: **all ~9.9k SICK pairs** (train + trial + test), as mteb's SICK-R does, unlike SentEval's 4,927 test
  pairs; the record's ``protocol`` says which one a number comes from.

The local files are tokenised and lower-cased, mteb's hub copies are not, so offline numbers can differ slightly
from leaderboard numbers; records say ``mteb-local`` or ``mteb-hub``.

Offline, any other task is read from ``<data_dir>/mteb/<task>/``, mteb's own dataset repo as the hub has it
(``syncse data fetch --rerank`` puts the four reranking sets there): the task is pointed at that folder and mteb
loads it with its own loader, so the data and the scoring are mteb's.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from syncse_ray.data.fetch import MTEB_DIR, sha256_file
from syncse_ray.data.senteval import StsData, read_sick, read_sts_year, read_stsb
from syncse_ray.errors import SyncseError
from syncse_ray.models.encoders import Encoder

if TYPE_CHECKING:
    from mteb.abstasks import AbsTask

MTEB_GROUPS: dict[str, tuple[str, ...]] = {
    "sts": ("STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "SICK-R"),
    "reranking": ("AskUbuntuDupQuestions", "MindSmallReranking", "SciDocsRR", "StackOverflowDupQuestions"),
}
DATA_SOURCES = ("auto", "hub", "local")


class MtebTaskError(SyncseError, ValueError):
    """A task name mteb does not know, or a task that cannot get its data; the message says what to do."""


def _sick_all(data_dir: str | Path) -> StsData:
    parts = [read_sick(data_dir, split) for split in ("train", "dev", "test")]
    return StsData("SICK-R", "test", [s for p in parts for s in p.s1], [s for p in parts for s in p.s2],
                   np.concatenate([p.gold for p in parts]), [f for p in parts for f in p.files])


# mteb task name -> the local SentEval pairs that stand in for its test split.
LOCAL_STS: dict[str, Callable[[str | Path], StsData]] = {
    **{year: (lambda d, y=year: read_sts_year(d, y)) for year in ("STS12", "STS13", "STS14", "STS15", "STS16")},
    "STSBenchmark": lambda d: read_stsb(d, "test"),
    "SICK-R": _sick_all,
}


def _wrapper_class():
    from mteb.models import ModelMeta
    from mteb.models.abs_encoder import AbsEncoder
    from mteb.models.model_meta import ScoringFunction

    class SyncseMtebEncoder(AbsEncoder):
        """Adapts a ``syncse_ray.models.encoders.Encoder`` to mteb's ``EncoderProtocol``: the texts of every batch
        of mteb's DataLoader are encoded in one call (so a ``CachedEncoder`` is reused); similarity is cosine."""

        def __init__(self, encoder: Encoder, revision: str = "local"):
            self.encoder = encoder
            slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", encoder.name).strip("_") or "model"
            self.mteb_model_meta = ModelMeta.create_empty({
                "name": f"syncse-ray/{slug}", "revision": revision, "similarity_fn_name": ScoringFunction.COSINE,
                "modalities": ["text"], "framework": ["PyTorch"],
            })

        def encode(self, inputs, *, task_metadata, hf_split, hf_subset, prompt_type=None, **kwargs: Any):
            texts = [text for batch in inputs for text in batch["text"]]
            return self.encoder.encode(texts, show_progress=bool(kwargs.get("show_progress_bar", True)))

    return SyncseMtebEncoder


def mteb_model(encoder: Encoder):
    """The mteb model wrapper (an ``AbsEncoder``) around one of our encoders."""
    return _wrapper_class()(encoder)


def expand_task_names(names: Sequence[str]) -> list[str]:
    """Group names (``sts``, ``reranking``) -> their tasks; other names are kept; order kept, duplicates dropped."""
    out: list[str] = []
    for name in names:
        out += MTEB_GROUPS.get(name.lower(), (name,))
    return list(dict.fromkeys(out))


def get_mteb_task(name: str) -> AbsTask:
    """``mteb.get_task`` with a clear error for a name mteb does not know."""
    import mteb

    try:
        return mteb.get_task(name)
    except KeyError as exc:
        hint = str(exc).strip("'\"")
        raise MtebTaskError(f"unknown mteb task {name!r} ({hint}); groups: {', '.join(MTEB_GROUPS)}; "
                            f"list the tasks with `python -m mteb available_tasks`") from None


def hub_reachable(timeout: float = 2.0) -> bool:
    """False when HF_HUB_OFFLINE is set or huggingface.co cannot be reached (TCP connect) within ``timeout``."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def repo_folder(data_dir: str | Path, name: str) -> Path:
    """Where the task's mteb dataset repo goes in the data dir: ``<data_dir>/mteb/<name>/``."""
    return Path(data_dir) / MTEB_DIR / name


def local_repo(data_dir: str | Path, name: str) -> Path | None:
    """``repo_folder`` when it holds a dataset repo (its README.md with the configs), else None."""
    folder = repo_folder(data_dir, name)
    return folder if (folder / "README.md").is_file() else None


def repo_fingerprint(folder: Path) -> str:
    """sha256 over the repo folder's files (relative path and content), first 16 hex digits."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}:{sha256_file(path)}\n".encode())
    return digest.hexdigest()[:16]


@contextmanager
def datasets_cache(root: Path | None, fingerprint: str):
    """`datasets`' cache for one local repo, keyed by its content: `datasets` names a local folder's cache after
    the folder and its file patterns only, so two copies of a task with other data (a test's, a newer revision)
    would be served each other's rows. ``<root>/<fingerprint>``, or a temporary folder when ``root`` is None."""
    import datasets

    where = tempfile.TemporaryDirectory(prefix="syncse-mteb-") if root is None else nullcontext(Path(root) / fingerprint)
    with where as folder:
        before, datasets.config.HF_DATASETS_CACHE = datasets.config.HF_DATASETS_CACHE, Path(folder)
        try:
            yield folder
        finally:
            datasets.config.HF_DATASETS_CACHE = before


def uses_hub(source: str) -> bool:
    """Whether mteb's data comes from the hub for this ``source`` (auto: when the hub is reachable)."""
    if source not in DATA_SOURCES:
        raise MtebTaskError(f"unknown mteb data source {source!r}; choose one of {', '.join(DATA_SOURCES)}")
    return source == "hub" or (source == "auto" and hub_reachable())


def feed_local(task: AbsTask, data_dir: str | Path) -> StsData:
    """Set ``task``'s test split to the local SentEval pairs, so that mteb evaluates it without the hub."""
    from datasets import Dataset, DatasetDict

    data = LOCAL_STS[task.metadata.name](data_dir)
    task.dataset = DatasetDict({"test": Dataset.from_dict(
        {"sentence1": data.s1, "sentence2": data.s2, "score": data.gold.tolist()})})
    task.data_loaded = True
    return data


def run_mteb(encoder: Encoder, names: Sequence[str], data_dir: str | Path, *, source: str = "auto",
             batch_size: int = 64, show_progress: bool = True,
             cache_dir: Path | None = None) -> list[dict[str, Any]]:
    """Evaluate ``encoder`` on mteb tasks; one dict per task/split/subset: task, split, subset, score (main score
    ×100), metric, protocol (``mteb-local`` / ``mteb-hub``), n (local pairs), data (files or hub dataset), data_fingerprint, time,
    seconds (the task's evaluation).

    ``source``: ``local`` feeds the STS tasks from the SentEval files and any other task from its repo folder in
    the data dir; ``hub`` uses mteb's own loading; ``auto`` uses the hub when it is reachable, else the local files.
    A local repo's `datasets` cache is ``<cache_dir>/mteb-datasets/<its fingerprint>`` (a temporary folder without
    ``cache_dir``)."""
    import mteb

    use_hub = uses_hub(source)
    tasks = [get_mteb_task(name) for name in expand_task_names(names)]  # every name checked before any work
    records: list[dict[str, Any]] = []
    model = mteb_model(encoder)
    for task in tasks:
        name = task.metadata.name
        loading = nullcontext()
        if use_hub:
            protocol = "mteb-hub"
            data_desc = f"hf:{task.metadata.dataset['path']}@{task.metadata.dataset.get('revision')}"
            fingerprint = str(task.metadata.dataset.get("revision"))[:16]
            n_pairs = None
        elif name in LOCAL_STS:
            data = feed_local(task, data_dir)
            protocol = "mteb-local"
            data_desc = ", ".join(str(p) for p in data.files[:3]) + (" ..." if len(data.files) > 3 else "")
            fingerprint = data.fingerprint()
            n_pairs = len(data.gold)
        elif (folder := local_repo(data_dir, name)) is not None:
            # the task's own copy (class-level metadata is shared by every instance: replace, don't mutate)
            task.metadata = task.metadata.model_copy(update={"dataset": {**task.metadata.dataset,
                                                                         "path": str(folder)}})
            protocol, data_desc, fingerprint, n_pairs = "mteb-local", str(folder), repo_fingerprint(folder), None
            loading = datasets_cache(None if cache_dir is None else Path(cache_dir) / "mteb-datasets", fingerprint)
        else:
            raise MtebTaskError(
                f"mteb task {name!r} needs its dataset ({task.metadata.dataset['path']}): the Hugging Face hub is "
                f"not reachable (or source='local') and {repo_folder(data_dir, name)} does not hold it; "
                f"`syncse data fetch --rerank` fetches the reranking sets there, {', '.join(LOCAL_STS)} are read "
                f"from the SentEval files")
        start = time.perf_counter()
        try:
            with loading:
                result = mteb.evaluate(model, task, cache=None, encode_kwargs={"batch_size": batch_size},
                                       show_progress_bar=show_progress, overwrite_strategy="always")
        except Exception as exc:
            raise MtebTaskError(f"mteb task {name!r} failed ({protocol}): {type(exc).__name__}: {exc}") from exc
        for task_result in result.task_results:
            for split, subsets in task_result.scores.items():
                for scores in subsets:
                    records.append({
                        "task": name, "split": split, "subset": scores.get("hf_subset", "default"),
                        "score": 100.0 * float(scores["main_score"]), "metric": task.metadata.main_score, "n": n_pairs,
                        "protocol": protocol, "data": data_desc, "data_fingerprint": fingerprint,
                        "time": datetime.now(UTC).isoformat(timespec="seconds"),
                        "seconds": time.perf_counter() - start,
                    })
    return records
