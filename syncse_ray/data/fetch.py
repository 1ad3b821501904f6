"""`syncse data fetch`: download the benchmark and seed data from the Hugging Face hub into the data-dir layout.

What is fetched (dataset name -> hub source -> files written below the data dir):

==================  ===========================================================  ==============================================
name                hub source (repo type dataset; what is read from it)          written
==================  ===========================================================  ==============================================
senteval-sts        princeton-nlp/datasets-for-simcse, file ``senteval.tar``     senteval/STS/STS12-en-test … STS16-en-test,
                    (SimCSE's copy of SentEval's ``data/downstream``; members     senteval/STS/STSBenchmark, senteval/SICK
                    below ``STS/`` and ``SICK/``)                                 (the files as SentEval ships them)
senteval-transfer   the same ``senteval.tar``: ``MR/ CR/ SUBJ/ MPQA/               senteval/MR … senteval/MRPC
(--transfer)        SST/binary/ TREC/ MRPC/``
snli                stanfordnlp/snli, splits ``validation`` and ``test``,        seeds/snli/{s1,s2,labels}.{dev,test}
                    columns ``premise``, ``hypothesis``, ``label`` (ClassLabel
                    entailment/neutral/contradiction; -1 = no gold label, dropped)
wiki1m-sample       princeton-nlp/datasets-for-simcse, ``wiki1m_for_simcse.txt``  seeds/wiki1m_sample.txt (its first 11,914 lines)
simcse-wiki1m       princeton-nlp/datasets-for-simcse, ``wiki1m_for_simcse.txt``  wiki1m_for_simcse.txt (the whole file; --only)
simcse-nli          princeton-nlp/datasets-for-simcse, ``nli_for_simcse.csv``     nli_for_simcse.csv (the whole file; --only)
rerank-<set>        mteb/AskUbuntuDupQuestions, MindSmallReranking, SciDocsRR,    mteb/<task>/ (the repo's files as the hub has
(--rerank)          StackOverflowDupQuestions at the revision mteb pins: the      them); <set>: askubuntu, mindsmall, scidocs,
                    whole repo (corpus, queries, qrels, top_ranked configs)       stackoverflow
==================  ===========================================================  ==============================================

Why ``senteval.tar`` and not the mteb copies (``mteb/sts12-sts`` …): SentEval's STS files are one subset a file
and the readers (``syncse_ray/data/senteval.py``) read the subsets by name, while the mteb copies have no subset column;
``mteb/sickr-sts`` is all 9,927 SICK pairs in one ``test`` split, with no train/trial/test; and the SentEval files
are the tokenized, lower-cased text the SimCSE and SynCSE papers evaluated on. The tar also holds the transfer sets.

The reranking sets (the four the SynCSE paper reports) are mteb's own copies, kept as the hub's repo folders at the
revision the installed mteb pins for each task (``RERANK_REPOS``; a test checks the pins against mteb): offline,
``syncse eval --tasks rerank`` points mteb's task at ``<data_dir>/mteb/<task>/`` and mteb reads it with its own
loader, so the scores are mteb's on mteb's data. Their row counts are read back with ``datasets`` per config.

Text differences from the files SentEval-based projects use: the ``snli`` files are written from the hub's
untokenized, cased text (SentEval's SNLI copy is tokenized: ``packages .``), same pairs (those with a gold label).
Every dataset's manifest entry says so in ``text``.

Each fetched dataset gets an entry in ``<data_dir>/manifest.json``: its source (hub id, files or splits, the
revision sha the hub resolved), licence, row counts (read back with the project's own readers) and the sha256 of
each file written. Files are written to a staging folder in the data dir, checked, then renamed into place one by
one, so an interrupted fetch never leaves a half-written file; the manifest entry is written last, so a dataset
without one is fetched again. A dataset whose manifest entry matches the files on disk is skipped unless
``force``.

``source``: instead of the hub, a local folder holding ``<owner>/<name>/`` folders laid out like the hub's
dataset repos (the same files); the same code reads them (``hf_hub_download`` -> a path below the folder,
``datasets.load_dataset(<folder>)`` for the split datasets). The tests use this; it also serves a mirror.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from syncse_ray.errors import SyncseError, SyncseRunError
from syncse_ray.io import write_json_atomic

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1

SIMCSE_REPO = "princeton-nlp/datasets-for-simcse"
SENTEVAL_TAR = "senteval.tar"
WIKI1M_FILE = "wiki1m_for_simcse.txt"
NLI_FILE = "nli_for_simcse.csv"
SNLI_REPO = "stanfordnlp/snli"
# split on the hub -> the suffix of SentEval's seeds/snli files
SNLI_SPLITS = {"validation": "dev", "test": "test"}
SNLI_LABELS = ("entailment", "neutral", "contradiction")  # the ClassLabel order of stanfordnlp/snli
WIKI1M_SAMPLE_LINES = 11_914  # the length of the shared data's seeds/wiki1m_sample.txt

STS_FOLDERS = ("STS/STS12-en-test", "STS/STS13-en-test", "STS/STS14-en-test", "STS/STS15-en-test",
               "STS/STS16-en-test", "STS/STSBenchmark", "SICK")
TRANSFER_FOLDERS = ("MR", "CR", "SUBJ", "MPQA", "SST/binary", "TREC", "MRPC")
# A member that tells where SentEval's data/downstream folder starts inside the tar.
TAR_ANCHOR = "STS/STS12-en-test/STS.input.MSRpar.txt"

# The SynCSE paper's reranking sets: mteb task -> (hub dataset repo, the revision mteb 2.26 pins for it)
RERANK_REPOS: dict[str, tuple[str, str]] = {
    "AskUbuntuDupQuestions": ("mteb/AskUbuntuDupQuestions", "c5691e3c48741d5f83b5cc8e630653d7a8cfc048"),
    "MindSmallReranking": ("mteb/MindSmallReranking", "227478e3235572039f4f7661840e059f31ef6eb1"),
    "SciDocsRR": ("mteb/SciDocsRR", "39b8377811871075eed9de3b8a7e21aaa6acb3d8"),
    "StackOverflowDupQuestions": ("mteb/StackOverflowDupQuestions", "5debda000fe8e27ebb5c123d38081f92e1847a59"),
}
MTEB_DIR = "mteb"  # <data_dir>/mteb/<task>/: an mteb dataset repo as the hub has it

STS_LICENCE = ("STS 2012-2016 and STS Benchmark: scores CC BY-SA 4.0, sentence texts under the terms of their "
               "sources (LICENSE/readme files in the folders); SICK: CC BY-NC-SA 3.0")
SENTEVAL_TEXT = "SentEval's files as distributed with SimCSE (tokenized, lower-cased), unchanged"


class FetchError(SyncseRunError):
    """A download or conversion failed (no network, a hub source changed shape): exit code 1."""


class FetchUsageError(SyncseError, ValueError):
    """An unknown dataset name or an unusable --source folder: exit code 2."""


# --------------------------------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Source:
    """Where hub datasets come from: the Hugging Face hub (``root`` None) or a local folder of hub-shaped repos."""

    root: Path | None = None
    cache_dir: Path | None = None  # the huggingface_hub / datasets cache; None: theirs

    def describe(self) -> str:
        return "huggingface hub" if self.root is None else f"local folder {self.root}"

    def _local(self, repo_id: str) -> Path:
        folder = Path(self.root) / repo_id
        if not folder.is_dir():
            raise FetchUsageError(f"--source {self.root} has no folder {repo_id}/ (expected <owner>/<name>/ laid "
                                  f"out like the hub's dataset repo)")
        return folder

    def revision(self, repo_id: str) -> str | None:
        """The commit sha the hub resolves ``main`` to (recorded, then used for every download), or None."""
        if self.root is not None:
            self._local(repo_id)
            return None
        from huggingface_hub import HfApi

        try:
            return HfApi().dataset_info(repo_id).sha
        except _download_errors() as exc:  # network errors, auth, a repo that moved: one message
            raise FetchError(f"cannot reach the Hugging Face hub for {repo_id}: {_short(exc)} (check the network "
                             f"or HF_ENDPOINT; or pass --source DIR with a local copy)") from None

    def file(self, repo_id: str, filename: str, revision: str | None) -> Path:
        """A local path to ``filename`` of the dataset repo (downloaded into the hub cache)."""
        if self.root is not None:
            path = self._local(repo_id) / filename
            if not path.is_file():
                raise FetchUsageError(f"--source {self.root}: {repo_id}/{filename} does not exist")
            return path
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(repo_id, filename, repo_type="dataset", revision=revision,
                                        cache_dir=self.cache_dir))
        except _download_errors() as exc:
            raise FetchError(f"cannot download {repo_id}/{filename}: {_short(exc)}") from None

    def snapshot(self, repo_id: str, revision: str | None) -> Path:
        """A local folder holding every file of the dataset repo at ``revision`` (the hub cache's snapshot)."""
        if self.root is not None:
            return self._local(repo_id)
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(repo_id, repo_type="dataset", revision=revision, cache_dir=self.cache_dir))
        except _download_errors() as exc:
            raise FetchError(f"cannot download {repo_id}@{revision}: {_short(exc)}") from None

    def split(self, repo_id: str, split: str, revision: str | None):
        """One split of a dataset repo as a ``datasets.Dataset``."""
        import datasets

        path = repo_id if self.root is None else str(self._local(repo_id))
        try:
            return datasets.load_dataset(path, split=split, revision=revision,
                                         cache_dir=None if self.cache_dir is None else str(self.cache_dir))
        except _download_errors() as exc:
            raise FetchError(f"cannot load {repo_id} split {split!r}: {_short(exc)}") from None


def _download_errors() -> tuple[type[BaseException], ...]:
    """What a failed download raises: huggingface_hub's and datasets' errors are OSErrors (HTTP, offline, not
    found) or ValueErrors (bad repo id or revision); the transport errors of the HTTP client huggingface_hub
    uses (httpx, or httpx2 in huggingface_hub 2.x: no DNS, refused connection, timeout) are neither."""
    import importlib

    errors: list[type[BaseException]] = [OSError, ValueError]
    for client in ("httpx", "httpx2"):
        try:
            errors.append(importlib.import_module(client).HTTPError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# --------------------------------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    what: str
    repo: str
    used: str  # the files, splits and columns read from the repo
    licence: str
    text: str  # how the written text relates to SentEval's copy
    write: Callable[[Source, str | None, Path], dict[str, Any]]  # -> row counts; files go below the given folder
    default: bool = True
    transfer: bool = False
    rerank: bool = False
    revision: str | None = None  # pinned (what the reader expects); None: the hub's main, resolved at fetch
    # files that mark the dataset as present in a data dir syncse did not fill (e.g. a shared, read-only copy)
    marks: tuple[str, ...] = ()

    def present(self, data_dir: Path) -> bool:
        return bool(self.marks) and all((Path(data_dir) / m).is_file() for m in self.marks)


def _sentevals_root(tar: tarfile.TarFile) -> str:
    """The folder inside the tar that holds SentEval's data/downstream layout ('' or e.g. 'downstream/')."""
    for name in tar.getnames():
        clean = _clean(name)
        if clean.endswith(TAR_ANCHOR):
            return clean[: -len(TAR_ANCHOR)]
    raise FetchError(f"{SIMCSE_REPO}/{SENTEVAL_TAR} holds no {TAR_ANCHOR}: not SentEval's data/downstream layout")


def _clean(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name


def _extract(tar_path: Path, folders: Sequence[str], out: Path) -> list[str]:
    """Copy the regular files below ``folders`` (relative to the tar's SentEval root) to ``out/senteval/``.
    Only plain files with plain relative names are written (no links, no absolute or ``..`` paths)."""
    written = []
    with tarfile.open(tar_path) as tar:
        root = _sentevals_root(tar)
        prefixes = [f"{root}{folder.rstrip('/')}/" for folder in folders]
        for member in tar.getmembers():
            name = _clean(member.name)
            if not member.isfile() or not any(name.startswith(p) for p in prefixes):
                continue
            rel = PurePosixPath(name[len(root):])
            if rel.is_absolute() or ".." in rel.parts or any(part.startswith(".") for part in rel.parts):
                continue  # macOS resource forks (._x) and anything odd
            target = out / "senteval" / Path(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst)
            written.append(str(rel))
    missing = [f for f in folders if not any(w.startswith(f.rstrip("/") + "/") for w in written)]
    if missing:
        raise FetchError(f"{SIMCSE_REPO}/{SENTEVAL_TAR} has no {', '.join(missing)} below its SentEval folder")
    return written


def _write_senteval_sts(source: Source, revision: str | None, out: Path) -> dict[str, Any]:
    from syncse_ray.data.senteval import STS_YEAR_SUBSETS, read_sick, read_sts_year, read_stsb

    _extract(source.file(SIMCSE_REPO, SENTEVAL_TAR, revision), STS_FOLDERS, out)
    rows: dict[str, Any] = {year: len(read_sts_year(out, year).gold) for year in STS_YEAR_SUBSETS}
    rows |= {f"STSBenchmark-{split}": len(read_stsb(out, split).gold) for split in ("train", "dev", "test")}
    rows |= {f"SICK-{split}": len(read_sick(out, split).gold) for split in ("train", "dev", "test")}
    return rows


def _write_senteval_transfer(source: Source, revision: str | None, out: Path) -> dict[str, Any]:
    from syncse_ray.data.senteval import TRANSFER_TASKS, read_transfer

    _extract(source.file(SIMCSE_REPO, SENTEVAL_TAR, revision), TRANSFER_FOLDERS, out)
    rows = {}
    for task in TRANSFER_TASKS:
        data = read_transfer(out, task)
        rows[task] = {split: len(labels) for split, labels in data.labels.items()}
    return rows


def _snli_label_names(dataset) -> Sequence[str]:
    feature = dataset.features.get("label")
    names = getattr(feature, "names", None)  # ClassLabel on the hub; a plain int column in some copies
    return tuple(names) if names else SNLI_LABELS


def _write_snli(source: Source, revision: str | None, out: Path) -> dict[str, Any]:
    folder = out / "seeds" / "snli"
    folder.mkdir(parents=True, exist_ok=True)
    rows = {}
    for hub_split, suffix in SNLI_SPLITS.items():
        data = source.split(SNLI_REPO, hub_split, revision)
        missing = {"premise", "hypothesis", "label"} - set(data.column_names)
        if missing:
            raise FetchError(f"{SNLI_REPO} split {hub_split} has no column(s) {sorted(missing)} "
                             f"(has {data.column_names})")
        names = _snli_label_names(data)
        s1, s2, labels = [], [], []
        for premise, hypothesis, label in zip(data["premise"], data["hypothesis"], data["label"]):
            if label is None or not 0 <= int(label) < len(names):
                continue  # -1: no gold label (SentEval's copy leaves these out too)
            s1.append(_one_line(premise))
            s2.append(_one_line(hypothesis))
            labels.append(names[int(label)])
        for stem, lines in (("s1", s1), ("s2", s2), ("labels", labels)):
            (folder / f"{stem}.{suffix}").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        rows[suffix] = len(labels)
    return rows


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _write_wiki1m_sample(source: Source, revision: str | None, out: Path) -> dict[str, Any]:
    path = source.file(SIMCSE_REPO, WIKI1M_FILE, revision)
    target = out / "seeds" / "wiki1m_sample.txt"
    target.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("rb") as src, target.open("wb") as dst:
        for raw in src:
            if n == WIKI1M_SAMPLE_LINES:
                break
            dst.write(raw if raw.endswith(b"\n") else raw + b"\n")
            n += 1
    return {"lines": n}


def _copy_file(filename: str) -> Callable[[Source, str | None, Path], dict[str, Any]]:
    def write(source: Source, revision: str | None, out: Path) -> dict[str, Any]:
        path = source.file(SIMCSE_REPO, filename, revision)
        shutil.copyfile(path, out / filename)
        with (out / filename).open("rb") as f:
            return {"lines": sum(1 for _ in f)}

    return write


def _copy_mteb_repo(task: str) -> Callable[[Source, str | None, Path], dict[str, Any]]:
    """The task's mteb dataset repo, file for file, into ``mteb/<task>/``; rows: each config's split sizes."""
    def write(source: Source, revision: str | None, out: Path) -> dict[str, Any]:
        import datasets

        repo = RERANK_REPOS[task][0]
        src = source.snapshot(repo, revision)
        target = out / MTEB_DIR / task
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src)
            if path.is_file() and not any(part.startswith(".") for part in rel.parts):  # not .gitattributes, .cache
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target / rel)  # the hub cache's symlinks resolved: the file itself
        if not (target / "README.md").is_file():
            raise FetchError(f"{repo} has no README.md: not a dataset repo with configs (as mteb's are)")
        rows: dict[str, Any] = {}
        # a cache of its own: `datasets` keys a local folder's cache by its name and file patterns, not its content
        with tempfile.TemporaryDirectory(prefix="syncse-fetch-") as cache:
            try:
                for config in datasets.get_dataset_config_names(str(target)):
                    ds = datasets.load_dataset(str(target), config, cache_dir=cache)
                    rows[config] = {split: len(part) for split, part in ds.items()}
            except (OSError, ValueError) as exc:
                raise FetchError(f"{repo} could not be read back with datasets: {_short(exc)}") from None
        return rows

    return write


def _rerank_spec(name: str, task: str) -> DatasetSpec:
    repo, revision = RERANK_REPOS[task]
    return DatasetSpec(name, f"{task} (mteb reranking; the SynCSE paper's reranking table)", repo,
                       "the whole repo (corpus, queries, qrels, top_ranked configs) at the revision mteb pins",
                       "the source dataset's terms (see the repo's README.md)", "mteb's copy, unchanged",
                       _copy_mteb_repo(task), default=False, rerank=True, revision=revision,
                       marks=(f"{MTEB_DIR}/{task}/README.md",))


DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    DatasetSpec("senteval-sts", "STS12-16, STS Benchmark, SICK (SentEval layout)", SIMCSE_REPO,
                f"{SENTEVAL_TAR}: STS/STS12-en-test … STS16-en-test, STS/STSBenchmark, SICK",
                STS_LICENCE, SENTEVAL_TEXT, _write_senteval_sts,
                marks=(*(f"senteval/STS/STS{y}-en-test/STS.input.{t}.txt" for y, t in (
                    ("12", "MSRpar"), ("13", "FNWN"), ("14", "images"), ("15", "images"), ("16", "headlines"))),
                       *(f"senteval/STS/STSBenchmark/sts-{s}.csv" for s in ("train", "dev", "test")),
                       *(f"senteval/SICK/SICK_{s}.txt" for s in ("train", "trial", "test_annotated")))),
    DatasetSpec("senteval-transfer", "SentEval transfer sets MR, CR, SUBJ, MPQA, SST2, TREC, MRPC", SIMCSE_REPO,
                f"{SENTEVAL_TAR}: {', '.join(TRANSFER_FOLDERS)}",
                "each set under its own terms (see the files and SentEval's data/downstream README)",
                SENTEVAL_TEXT, _write_senteval_transfer, default=False, transfer=True),
    DatasetSpec("snli", "SNLI dev + test pairs with a gold label (premise s1, hypothesis s2, labels)", SNLI_REPO,
                "splits validation -> dev, test -> test; columns premise, hypothesis, label (ClassLabel "
                "entailment/neutral/contradiction, -1 dropped)", "CC BY-SA 4.0",
                "the hub's text: untokenized and cased (SentEval's SNLI copy is tokenized); the same pairs",
                _write_snli, marks=tuple(f"seeds/snli/{n}.{s}" for n in ("s1", "s2", "labels") for s in ("dev", "test"))),
    DatasetSpec("wiki1m-sample", f"the first {WIKI1M_SAMPLE_LINES:,} lines of SimCSE's 1M Wikipedia sentences",
                SIMCSE_REPO, WIKI1M_FILE, "CC BY-SA (Wikipedia text)", "SimCSE's file, unchanged",
                _write_wiki1m_sample, marks=("seeds/wiki1m_sample.txt",)),
    DatasetSpec("simcse-wiki1m", "SimCSE's 1M Wikipedia sentences (unsup-SimCSE recipes)", SIMCSE_REPO,
                WIKI1M_FILE, "CC BY-SA (Wikipedia text)", "SimCSE's file, unchanged", _copy_file(WIKI1M_FILE),
                default=False),
    DatasetSpec("simcse-nli", "SimCSE's NLI triplets (sup-SimCSE and paper recipes)", SIMCSE_REPO, NLI_FILE,
                "CC BY-SA 4.0 (SNLI) and MultiNLI's licences", "SimCSE's file, unchanged", _copy_file(NLI_FILE),
                default=False),
    _rerank_spec("rerank-askubuntu", "AskUbuntuDupQuestions"),
    _rerank_spec("rerank-mindsmall", "MindSmallReranking"),
    _rerank_spec("rerank-scidocs", "SciDocsRR"),
    _rerank_spec("rerank-stackoverflow", "StackOverflowDupQuestions"),
)}


def select(only: Sequence[str] | None = None, transfer: bool = False, rerank: bool = False) -> list[DatasetSpec]:
    """The datasets to fetch: ``only`` (names), else the defaults; plus the transfer sets with ``transfer`` and
    the reranking sets with ``rerank``."""
    def wanted(spec: DatasetSpec) -> bool:
        return (transfer and spec.transfer) or (rerank and spec.rerank)

    if only:
        unknown = [n for n in only if n not in DATASETS]
        if unknown:
            raise FetchUsageError(f"unknown dataset {', '.join(unknown)}; known: {', '.join(DATASETS)}")
        names = list(dict.fromkeys([*only, *(s.name for s in DATASETS.values() if wanted(s))]))
        return [DATASETS[n] for n in names]
    return [s for s in DATASETS.values() if s.default or wanted(s)]


# --------------------------------------------------------------------------------------------------- manifest


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(data_dir: Path) -> dict[str, Any]:
    path = Path(data_dir) / MANIFEST
    if not path.is_file():
        return {"format": MANIFEST_FORMAT, "datasets": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"format": MANIFEST_FORMAT, "datasets": {}}
    data.setdefault("datasets", {})
    return data


def is_complete(data_dir: Path, entry: dict[str, Any] | None) -> bool:
    """Whether every file a manifest entry lists is there with the sha256 it recorded."""
    if not entry or not entry.get("files"):
        return False
    for rel, info in entry["files"].items():
        path = Path(data_dir) / rel
        if not path.is_file() or path.stat().st_size != info.get("bytes") or sha256_file(path) != info.get("sha256"):
            return False
    return True


# --------------------------------------------------------------------------------------------------- fetch


@dataclass
class Fetched:
    name: str
    status: str  # "fetched" | "skipped" (complete per the manifest) | "present" (there, not fetched by syncse)
    rows: dict[str, Any]
    files: int


def _move_into_place(staging: Path, data_dir: Path) -> dict[str, dict[str, Any]]:
    """Rename every staged file to its place below data_dir (each rename atomic); their sha256 and sizes."""
    files = {}
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        rel = path.relative_to(staging).as_posix()
        files[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    for rel in files:
        target = data_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / rel, target)
    return files


def fetch_one(spec: DatasetSpec, data_dir: Path, source: Source, *, force: bool = False,
              revisions: dict[str, str | None] | None = None) -> Fetched:
    data_dir = Path(data_dir)
    entry = read_manifest(data_dir)["datasets"].get(spec.name)
    if not force and is_complete(data_dir, entry):
        return Fetched(spec.name, "skipped", entry.get("rows", {}), len(entry["files"]))
    if not force and entry is None and spec.present(data_dir):
        return Fetched(spec.name, "present", {}, len(spec.marks))
    revisions = {} if revisions is None else revisions
    if spec.repo not in revisions:
        # a pinned revision is what the hub is asked for; a local --source folder has none
        revisions[spec.repo] = spec.revision if spec.revision and source.root is None else source.revision(spec.repo)
    revision = revisions[spec.repo]
    data_dir.mkdir(parents=True, exist_ok=True)
    staging = data_dir / f".fetch-{spec.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        rows = spec.write(source, revision, staging)
        files = _move_into_place(staging, data_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    manifest = read_manifest(data_dir)  # re-read: another dataset may have been recorded meanwhile
    manifest["format"] = MANIFEST_FORMAT
    manifest["datasets"][spec.name] = {
        "what": spec.what,
        "source": {"hub": spec.repo, "repo_type": "dataset", "used": spec.used,
                   "revision": revision if source.root is None else None,
                   "from": source.describe()},
        "licence": spec.licence,
        "text": spec.text,
        "rows": rows,
        "files": files,
        "fetched": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_json_atomic(data_dir / MANIFEST, manifest)
    return Fetched(spec.name, "fetched", rows, len(files))


def fetch(data_dir: Path, *, only: Sequence[str] | None = None, transfer: bool = False, rerank: bool = False,
          force: bool = False, source: Source | None = None,
          on_dataset: Callable[[Fetched], None] | None = None) -> list[Fetched]:
    """Fetch the selected datasets (`select`) into ``data_dir``; skipped when complete unless ``force``."""
    source = source or Source()
    if source.root is not None and not Path(source.root).is_dir():
        raise FetchUsageError(f"--source {source.root} is not a folder")
    revisions: dict[str, str | None] = {}
    done = []
    for spec in select(only, transfer, rerank):
        result = fetch_one(spec, Path(data_dir), source, force=force, revisions=revisions)
        done.append(result)
        if on_dataset is not None:
            on_dataset(result)
    return done
