"""Sentence encoders behind one interface, so the same evaluator scores a folder, a hub model or a live endpoint.

    encoder = load_encoder("bundled:all-minilm-l6-v2")          # sentence-transformers folder
    encoder = load_encoder("roberta-base", pooler="avg")         # plain transformers model + a SimCSE pooler
    encoder = load_encoder("http://localhost:8000/v1")           # OpenAI-compatible embeddings endpoint
    vectors = encoder.encode(["a sentence", "another"])          # float32 [n, d]

Poolers for plain transformers models are `syncse_ray.models.pooling`'s (the one implementation training uses); ``cls``
is the model's own MLP pooler (``pooler_output``). The weights load in ``precision`` (default ``auto``: the
checkpoint's own dtype where the device runs it natively, so the bundled SmolLM2's bf16 stays bf16 on AMX and
becomes fp32 on an AVX2 CPU; syncse_ray.hardware); ``encoder.precision`` says which.

A folder with ``modules.json`` is a sentence-transformers model and uses its own pooling unless a pooler is given;
a folder ``syncse train`` exported always pools as it was trained.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from tqdm.auto import tqdm

from syncse_ray.models.batching import run_batches, sorted_batches
from syncse_ray.models.pooling import POOLERS, needs_hidden_states, pool, prepare_tokenizer
from syncse_ray.models.references import ModelError, resolve_model

DEFAULT_BATCH_SIZE = 64


@runtime_checkable
class Encoder(Protocol):
    """Anything that maps sentences to fixed-size vectors. ``name`` is the model reference as given."""

    name: str

    def encode(self, sentences: Sequence[str], *, show_progress: bool = True) -> np.ndarray:
        """float32 array ``[len(sentences), dim]``, row i for sentence i."""
        ...


def _batches(items: Sequence[str], size: int, desc: str, show: bool):
    starts = range(0, len(items), size)
    for start in tqdm(starts, desc=desc, unit="batch", disable=not show or len(starts) <= 1, leave=False):
        yield start, items[start:start + size]


def encode_by_length(sentences: Sequence[str], encode_batch: Callable[[list[str]], np.ndarray], *, batch_size: int,
                     dim: int, desc: str = "encode", show_progress: bool = False) -> np.ndarray:
    """``encode_batch(list[str]) -> float32 [b, d]`` over length-sorted batches (they pad less; `batching`), rows
    put back in input order: the one encode loop of the plain transformers encoder and of the training model."""
    batches = sorted_batches([len(s) for s in sentences], batch_size)
    if not batches:
        return np.zeros((0, dim), np.float32)
    with tqdm(total=len(batches), desc=desc, unit="batch", disable=not show_progress or len(batches) <= 1,
              leave=False) as bar:
        def encode(indices: list[int]) -> np.ndarray:
            rows = encode_batch([sentences[i] for i in indices])
            bar.update(1)
            return rows
        return run_batches(batches, encode, len(sentences))


class SentenceTransformerEncoder:
    """A sentence-transformers model folder (our exports, the bundled MiniLM, hub ST models)."""

    def __init__(self, name: str, path: Path, *, batch_size: int, max_seq_length: int | None, device: str,
                 precision: str = "fp32"):
        from sentence_transformers import SentenceTransformer

        from syncse_ray.hardware import torch_dtype

        self.name, self.batch_size, self.precision = name, batch_size, precision
        self.model = SentenceTransformer(str(path), device=device, model_kwargs={"dtype": torch_dtype(precision)})
        self.model.eval()
        if max_seq_length:
            self.model.max_seq_length = max_seq_length

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    def encode(self, sentences: Sequence[str], *, show_progress: bool = True) -> np.ndarray:
        out = self.model.encode(list(sentences), batch_size=self.batch_size, show_progress_bar=show_progress,
                                convert_to_numpy=True)
        return np.asarray(out, dtype=np.float32)


class TransformersEncoder:
    """A plain transformers encoder (``AutoModel``) with one of the SimCSE poolers (module docstring)."""

    def __init__(self, name: str, path: Path, pooler: str, *, batch_size: int, max_seq_length: int | None,
                 device: str, precision: str = "fp32"):
        from transformers import AutoModel, AutoTokenizer

        from syncse_ray.hardware import torch_dtype

        if pooler not in POOLERS:
            raise ModelError(f"unknown pooler {pooler!r}; choose one of {', '.join(POOLERS)}")
        self.name, self.pooler, self.batch_size, self.device = name, pooler, batch_size, device
        self.precision = precision
        self.max_length = max_seq_length or 512
        self.tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(path), pooler)
        self.model = AutoModel.from_pretrained(path, dtype=torch_dtype(precision)).to(device).eval()
        if pooler == "cls" and getattr(self.model, "pooler", None) is None:
            raise ModelError(f"{name} has no MLP pooler (pooler_output); use --pooler cls_before_pooler or avg")

    def _encode_batch(self, batch: list[str]) -> np.ndarray:
        import torch

        enc = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt").to(self.device)
        with torch.inference_mode():
            out = self.model(**enc, output_hidden_states=needs_hidden_states(self.pooler))
            vectors = out.pooler_output if self.pooler == "cls" else pool(self.pooler, out, enc["attention_mask"])
        return vectors.float().cpu().numpy()

    def encode(self, sentences: Sequence[str], *, show_progress: bool = True) -> np.ndarray:
        return encode_by_length(sentences, self._encode_batch, batch_size=self.batch_size,
                                dim=self.model.config.hidden_size, desc=f"encode {self.name}",
                                show_progress=show_progress)


class EndpointEncoder:
    """An OpenAI-compatible embeddings endpoint: ``POST {base_url}/embeddings`` with
    ``{"input": [...], "model": ...}``, answer ``{"data": [{"embedding": [...], "index": i}, ...]}``.
    The served model name defaults to the first id of ``GET {base_url}/models``."""

    def __init__(self, base_url: str, *, model: str | None, batch_size: int, timeout: float = 120.0):
        import httpx

        self.name, self.batch_size = base_url, batch_size
        self.base_url = base_url.rstrip("/")
        self.client = httpx.Client(timeout=timeout)
        try:
            self.model = model or self._first_served_model()
        except httpx.HTTPError as exc:
            raise ModelError(f"cannot reach the embeddings endpoint {self.base_url}: {exc}") from exc

    def _first_served_model(self) -> str:
        response = self.client.get(f"{self.base_url}/models")
        response.raise_for_status()
        data = response.json().get("data") or []
        if not data:
            raise ModelError(f"{self.base_url}/models lists no model; pass the served model name")
        return data[0]["id"]

    def _post(self, batch: list[str]) -> np.ndarray:
        import httpx

        try:
            response = self.client.post(f"{self.base_url}/embeddings", json={"input": batch, "model": self.model})
            response.raise_for_status()
        except httpx.HTTPError as exc:
            detail = getattr(getattr(exc, "response", None), "text", "")[:500]
            raise ModelError(f"embeddings request to {self.base_url} failed: {exc} {detail}".strip()) from exc
        rows = response.json()["data"]
        if sorted(r["index"] for r in rows) != list(range(len(batch))):
            raise ModelError(f"{self.base_url}/embeddings returned {len(rows)} rows for {len(batch)} inputs")
        vectors = np.empty((len(batch), len(rows[0]["embedding"])), dtype=np.float32)
        for row in rows:
            vectors[row["index"]] = row["embedding"]
        return vectors

    def encode(self, sentences: Sequence[str], *, show_progress: bool = True) -> np.ndarray:
        parts = [self._post(list(batch))
                 for _, batch in _batches(sentences, self.batch_size, f"encode {self.name}", show_progress)]
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


class CachedEncoder:
    """Memoises another encoder by sentence: each distinct sentence is encoded once per process, so tasks that
    share sentences (and the SentEval and MTEB views of the same files) share encodings."""

    def __init__(self, inner: Encoder):
        self.inner, self.name = inner, inner.name
        self._cache: dict[str, np.ndarray] = {}

    def encode(self, sentences: Sequence[str], *, show_progress: bool = True) -> np.ndarray:
        missing = list(dict.fromkeys(s for s in sentences if s not in self._cache))
        if missing:
            for sentence, vector in zip(missing, self.inner.encode(missing, show_progress=show_progress)):
                self._cache[sentence] = vector
        if not sentences:
            return np.zeros((0, 0), np.float32)
        return np.stack([self._cache[s] for s in sentences])


def encoder_precision(requested: str, device: str, path: Path) -> str:
    """`requested` (auto, fp32, bf16, fp16) resolved for encoding with the model folder `path` on `device`:
    `auto` keeps the folder's own dtype where the device runs it natively (syncse_ray.hardware)."""
    from syncse_ray.hardware import precision_here, stored_precision

    return precision_here(requested, "cuda" if str(device).startswith("cuda") else "cpu",
                          stored=stored_precision(path) or "fp32")


def is_endpoint(reference: str) -> bool:
    return bool(re.match(r"https?://", reference))


def load_encoder(reference: str, *, pooler: str | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 max_seq_length: int | None = None, served_model: str | None = None,
                 cache_dir: Path | None = None, device: str | None = None, precision: str = "auto") -> Encoder:
    """Any model reference the project knows -> an ``Encoder``:

    - ``http(s)://host/v1``: an OpenAI-compatible embeddings endpoint (``served_model`` picks the model);
    - ``bundled:<name>``, a local folder or a hub name (``syncse_ray.models.references.resolve_model``): a
      sentence-transformers model when the folder has ``modules.json`` and no ``pooler`` is given, else a plain
      transformers model with ``pooler`` (default ``cls``, as SimCSE's evaluation).

    ``precision`` (auto, fp32, bf16, fp16) is the weights' dtype; ``auto`` resolves by the device and the folder's
    own dtype (syncse_ray.hardware.resolve_precision). An endpoint ignores it.

    Every failure is a ``ModelError`` that says what could not be loaded and why.
    """
    if is_endpoint(reference):
        return EndpointEncoder(reference, model=served_model, batch_size=batch_size)
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    path = resolve_model(reference, cache_dir)
    trained = path / "syncse_train.json"
    if pooler is not None and trained.is_file():
        trained_pooler = json.loads(trained.read_text()).get("pooler")
        if pooler != trained_pooler:
            raise ModelError(f"{reference} was trained with pooler {trained_pooler!r}; its folder pools that way "
                             f"(leave out --pooler, or pass {trained_pooler!r})")
        pooler = None  # the exported folder's modules are that pooler
    precision = encoder_precision(precision, device, path)
    try:
        if (path / "modules.json").is_file() and pooler is None:
            return SentenceTransformerEncoder(reference, path, batch_size=batch_size,
                                              max_seq_length=max_seq_length, device=device, precision=precision)
        return TransformersEncoder(reference, path, pooler or "cls", batch_size=batch_size,
                                   max_seq_length=max_seq_length, device=device, precision=precision)
    except ModelError:
        raise
    except Exception as exc:  # transformers / sentence-transformers raise many types for a bad folder
        raise ModelError(f"cannot load model {reference!r} from {path}: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
