"""Scores that every run would compute the same way, kept once in the user cache (not the run folder).

The score of a model on an evaluation task depends only on:

- the model's files: a content hash (sha256) of every file of the resolved folder, by relative path, except
  hidden files and Markdown (model cards; `syncse eval` writes its table into the card of a trained folder).
  `bundled:` and hub names are resolved to their folder first, so a re-converted or re-downloaded model with
  other bytes is another model. Hashing reads the weights once (~1 s a GB here), against minutes of encoding;
- how the encoder is built: the pooler asked for (`None`: the folder's own sentence-transformers pooling), the
  precision the weights run in, the device kind (cpu / cuda), `max_seq_length` and the batch size;
- the task: its protocol, its name, the fingerprint of the data files it read (`StsData.files`,
  `TransferData.files`) and, for transfer probes, the number of folds;
- the scoring code: `SCORE_CACHE_VERSION`, a digest of the modules that embed and score
  (encoders, pooling, eval/sts, eval/transfer) and the versions of the libraries they call.

The batch size is part of the key because in reduced precision it changes the score: the attention mask keeps
padding out of every pooler, but a batch's shape changes how bf16 products round. SmolLM2 (avg pooler) on STS-B
test here: bf16 37.05 at batch 64 and 36.97 at batch 16; fp32 36.855167283717535 at both, bit for bit. mteb tasks
are never cached (their data may come from the hub); endpoints neither (the model behind a URL can change).

Layout: ``<cache_dir>/scores/v<version>/<key[:2]>/<key>.json`` holding ``{"key": {...}, "encoder", "record",
"stored"}``. Entries are written to a temporary file and renamed into place, so concurrent runs never see half
an entry (two runs that miss together both write the same entry; the last rename wins).

The pure parts (`model_fingerprint`, `score_key`, `key_digest`, `ScoreCache`) import nothing heavy and are
unit-tested without a model; `encoder_identity` resolves the model and asks the machine for its precision.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from syncse_ray.io import write_json_atomic

log = logging.getLogger("syncse_ray.eval")

# Bump when a change to the evaluation changes a score the module digest below would not catch.
SCORE_CACHE_VERSION = 1
# Protocols whose records depend only on the key above.
CACHED_PROTOCOLS = ("senteval-sts", "senteval-sts-dev", "senteval-transfer")
# The modules an embedding or a score is computed by (paths below syncse_ray/); their source is part of every key.
# tests/test_architecture.py checks that each exists (a moved one would silently drop out of the key).
SCORING_MODULES = ("models/encoders.py", "models/pooling.py", "models/vectors.py", "models/batching.py",
                   "data/senteval.py", "eval/sts.py", "eval/transfer.py")
LIBRARIES = ("torch", "transformers", "sentence-transformers", "numpy", "scipy", "scikit-learn")
SKIPPED_SUFFIXES = (".md",)
CHUNK = 1 << 20


def model_fingerprint(folder: str | os.PathLike) -> str:
    """sha256 (first 32 hex digits) over (relative path, size, content) of every file below `folder`, in path
    order, following symlinks (hub snapshots link into a blob store); hidden files and Markdown are left out."""
    root = Path(folder)
    files = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or path.suffix.lower() in SKIPPED_SUFFIXES:
            continue
        if path.is_file():
            files.append((rel.as_posix(), path))
    if not files:
        raise FileNotFoundError(f"no model files in {root}")
    digest = hashlib.sha256()
    for rel, path in sorted(files):
        digest.update(f"{rel}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def code_fingerprint(package_dir: Path | None = None) -> str:
    """sha256 (first 16 hex digits) of the scoring modules' source (`SCORING_MODULES`)."""
    package_dir = package_dir or Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for name in SCORING_MODULES:
        path = package_dir / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"") + b"\0")
    return digest.hexdigest()[:16]


def library_versions(names: Iterable[str] = LIBRARIES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def score_key(identity: dict[str, Any], *, protocol: str, task: str, data_fingerprint: str,
              kfold: int | None = None) -> dict[str, Any]:
    """The full key of one task's score: the encoder's `identity` (`encoder_identity`) plus the task."""
    if protocol not in CACHED_PROTOCOLS:
        raise ValueError(f"{protocol!r} scores are not cached; cached: {', '.join(CACHED_PROTOCOLS)}")
    key = {**identity, "protocol": protocol, "task": task, "data": data_fingerprint}
    if protocol == "senteval-transfer":
        key["kfold"] = kfold
    return key


def key_digest(key: dict[str, Any]) -> str:
    """sha256 of the key as canonical JSON (sorted keys): the entry's file name."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def make_identity(*, model: str, pooler: str | None, precision: str, device: str, max_seq_length: int | None,
                  batch_size: int, code: str, libraries: dict[str, str],
                  version: int = SCORE_CACHE_VERSION) -> dict[str, Any]:
    """The encoder half of a key, from values (pure)."""
    return {"version": version, "code": code, "libraries": dict(sorted(libraries.items())), "model": model,
            "pooler": pooler, "precision": precision, "device": device, "max_seq_length": max_seq_length,
            "batch_size": batch_size}


def cacheable_reference(reference: str) -> bool:
    """Whether `syncse eval` caches this reference's scores by default: `bundled:` and hub names (models that do
    not change under a name); not local folders (a trained model is scored once) nor endpoints."""
    from syncse_ray.models.encoders import is_endpoint
    from syncse_ray.models.references import BUNDLED_PREFIX

    if reference.startswith(BUNDLED_PREFIX):
        return True
    if is_endpoint(reference) or Path(reference).expanduser().exists():
        return False
    return not reference.startswith((".", "/", "~"))


def encoder_identity(reference: str, *, pooler: str | None, precision: str | None, max_seq_length: int | None,
                     batch_size: int, cache_dir: Path | None) -> dict[str, Any] | None:
    """The identity of the encoder `load_encoder(reference, ...)` would build here, or None for an endpoint. Its
    precision is the one `load_encoder` resolves `precision` to for this folder on this machine."""
    from syncse_ray.hardware import this_machine
    from syncse_ray.models import encoders
    from syncse_ray.models.references import resolve_model

    if encoders.is_endpoint(reference):
        return None
    folder = resolve_model(reference, cache_dir)
    device = "cuda" if this_machine().gpus else "cpu"
    resolve = getattr(encoders, "encoder_precision", None)  # absent: the weights load in the checkpoint's dtype
    used = resolve(precision or "auto", device, folder) if resolve else "checkpoint"
    return make_identity(model=model_fingerprint(folder), pooler=pooler, precision=used, device=device,
                         max_seq_length=max_seq_length, batch_size=batch_size, code=code_fingerprint(),
                         libraries=library_versions())


@dataclass
class ScoreCache:
    """Per-task score records below `root` (module docstring)."""

    root: Path

    @classmethod
    def in_cache_dir(cls, cache_dir: str | os.PathLike | None = None) -> ScoreCache:
        from syncse_ray.config.root import default_cache_dir

        return cls(Path(cache_dir if cache_dir is not None else default_cache_dir()) / "scores")

    def path(self, key: dict[str, Any]) -> Path:
        digest = key_digest(key)
        return self.root / f"v{key.get('version', SCORE_CACHE_VERSION)}" / digest[:2] / f"{digest}.json"

    def get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        """The stored entry ({"key", "encoder", "record", "stored"}) or None; an unreadable entry is a miss."""
        path = self.path(key)
        try:
            entry = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("score cache: ignoring unreadable %s (%s)", path, exc)
            return None
        if not isinstance(entry, dict) or entry.get("key") != key or "score" not in entry.get("record", {}):
            return None
        return entry

    def put(self, key: dict[str, Any], record: dict[str, Any], encoder: str) -> Path:
        """Store one task's record (atomically: temp file + rename); a cache that cannot be written only warns."""
        entry = {"key": key, "encoder": encoder, "record": record,
                 "stored": datetime.now(UTC).isoformat(timespec="seconds")}
        path = self.path(key)
        try:
            return write_json_atomic(path, entry)
        except OSError as exc:
            log.warning("score cache: cannot write %s (%s)", path, exc)
            return path
