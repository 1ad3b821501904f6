"""What this machine can do, and the numeric precision that follows from it.

One rule for every place a dtype is chosen (the vLLM engine, training, the export, every encoder that loads a
model), so that `auto` means the same everywhere:

    CUDA: bf16 where the GPU multiplies bf16 natively (compute capability >= 8.0), else fp16.
    CPU:  bf16 only where the CPU multiplies bf16 natively (AMX or AVX512-BF16), else fp32.
    A model loaded to encode with (evaluation, the judge, serving) keeps its checkpoint's precision within
    that rule: an fp32 folder stays fp32, a bf16 folder runs in fp32 on a CPU without native bf16.

On a CPU without native bf16 (AVX2: most laptops, many cloud machines) a bf16 matrix product runs ~5x slower
than fp32 (one thread of `F.linear`, 64x576 @ 576x1536, AMD EPYC: 4.4 against 21.4 GFLOP/s), and vLLM's CPU
engine falls back to plain torch linears. An explicit value always wins.

The CPU's flags are read from /proc/cpuinfo, capped where the process asked torch or oneDNN to stay below them
(`ATEN_CPU_CAPABILITY=avx2`, `ONEDNN_MAX_CPU_ISA=AVX2`): that is how an AMX machine stands in for an AVX2 one.
Pure functions take the flags as arguments and are tested without either kind of machine.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
# vLLM's and torch's names for the same three, as `synth.engine.dtype` also accepts them.
DTYPE_ALIASES = {"bfloat16": "bf16", "float32": "fp32", "float": "fp32", "float16": "fp16", "half": "fp16"}
VLLM_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}

# CPU capability tiers, lowest first, with the /proc/cpuinfo flags each needs.
CAPABILITIES: tuple[tuple[str, frozenset[str]], ...] = (
    ("avx2", frozenset({"avx2", "fma"})),
    ("avx512", frozenset({"avx512f", "avx512bw", "avx512vl"})),
    ("avx512_bf16", frozenset({"avx512_bf16"})),
    ("amx", frozenset({"amx_bf16", "amx_tile"})),
)
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA values -> the highest tier they allow.
_CAPS = {"default": None, "avx2": "avx2", "avx512": "avx512", "avx2_vnni": "avx2", "avx512_core": "avx512",
         "avx512_core_vnni": "avx512", "avx512_core_bf16": "avx512_bf16", "avx10_1_512": "avx512_bf16",
         "avx512_core_amx": "amx", "avx10_1_512_amx": "amx", "avx2_vnni_2": "avx2",
         "avx512_core_fp16": "avx512_bf16", "avx512_core_amx_fp16": "amx", "all": "amx"}


def normalize_precision(value: str) -> str:
    """`auto`, `fp32`, `bf16`, `fp16` or one of their dtype names (`bfloat16`, `float32`, `half`, ...) -> the
    short name; anything else is a ValueError naming the choices."""
    name = DTYPE_ALIASES.get(str(value).lower(), str(value).lower())
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {value!r}; choose one of {', '.join(PRECISIONS)} "
                         f"(or {', '.join(DTYPE_ALIASES)})")
    return name


def capability_cap(env: dict[str, str] | None = None) -> str | None:
    """The highest CPU tier the process was asked to stay at or below (None: no cap)."""
    env = os.environ if env is None else env
    caps = []
    for var in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA"):
        value = env.get(var, "").strip().lower()
        if value and value in _CAPS and _CAPS[value] is not None:
            caps.append(_CAPS[value])
        elif value and value not in _CAPS:  # an ISA name we do not know: treat as AVX2-class, the safe side
            caps.append("avx2")
    tiers = [name for name, _ in CAPABILITIES]
    return min(caps, key=tiers.index) if caps else None


def effective_flags(flags: Iterable[str], cap: str | None) -> frozenset[str]:
    """`flags` without those of the tiers above `cap`."""
    flags = frozenset(flags)
    if cap is None:
        return flags
    tiers = [name for name, _ in CAPABILITIES]
    above = set().union(*(needs for name, needs in CAPABILITIES[tiers.index(cap) + 1:]))
    if tiers.index(cap) < tiers.index("avx512"):
        above |= {f for f in flags if f.startswith(("avx512", "amx"))}
    elif tiers.index(cap) < tiers.index("amx"):
        above |= {f for f in flags if f.startswith("amx")}
    return flags - above


def cpu_capability(flags: Iterable[str]) -> str:
    """The highest tier whose flags are all present: `amx`, `avx512_bf16`, `avx512`, `avx2` or `baseline`."""
    flags = frozenset(flags)
    best = "baseline"
    for name, needs in CAPABILITIES:
        if needs <= flags:
            best = name
    return best


def cpu_has_native_bf16(flags: Iterable[str]) -> bool:
    return bool(NATIVE_BF16_FLAGS & frozenset(flags))


def resolve_precision(requested: str, *, device: str, cpu_flags: Iterable[str] = (),
                      cuda_bf16: bool = False, stored: str | None = None) -> Precision:
    """The precision to run in: `requested` unless it is `auto`, then the rule in the module docstring.
    `device` is `cpu` or `cuda`; `cpu_flags` the CPU's effective flags; `cuda_bf16` whether the GPU has bf16.

    `stored` is the dtype a model folder holds its weights in, for loading a model to encode with: `auto` then
    keeps the checkpoint's own precision and only avoids a slow or missing path (never lowers it): fp32 stays
    fp32; bf16 runs as bf16 where native, else fp32 on a CPU and fp16 on an older GPU; fp16 runs as fp32 on a
    CPU."""
    name = normalize_precision(requested)
    if name != "auto":
        return name  # type: ignore[return-value]
    gpu = device.startswith("cuda")
    best = ("bf16" if cuda_bf16 else "fp16") if gpu else ("bf16" if cpu_has_native_bf16(cpu_flags) else "fp32")
    if stored is None:
        return best  # type: ignore[return-value]
    stored = normalize_precision(stored) if stored in PRECISIONS or stored in DTYPE_ALIASES else "fp32"
    if stored in ("fp32", "auto"):
        return "fp32"
    if stored == "bf16":
        return best  # type: ignore[return-value]
    return "fp16" if gpu else "fp32"  # fp16 weights: a GPU runs them, a CPU has no fast fp16 path


def stored_precision(folder) -> str | None:
    """The dtype a transformers / sentence-transformers folder holds its weights in (its config.json's `dtype`
    or `torch_dtype`), as a precision name; None when it does not say."""
    import json
    from pathlib import Path

    try:
        config = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    value = config.get("dtype") or config.get("torch_dtype")
    return DTYPE_ALIASES.get(str(value).lower()) if value else None


def slow_precision_warning(requested: str, *, device: str, cpu_flags: Iterable[str]) -> str | None:
    """A one-line warning when an explicit bf16 will run on a CPU without native bf16; None otherwise."""
    if device.startswith("cuda") or normalize_precision(requested) != "bf16" or cpu_has_native_bf16(cpu_flags):
        return None
    return (f"bf16 was asked for on a CPU without native bf16 ({cpu_capability(cpu_flags)}): it runs several "
            f"times slower than fp32, which `auto` would choose here")


# -- this machine ----------------------------------------------------------------------------------------------

def _cpuinfo() -> tuple[str, frozenset[str]]:
    model, flags = platform.processor() or platform.machine(), frozenset()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = frozenset(value.split())
    except OSError:
        pass
    return model, flags


@dataclass(frozen=True)
class Machine:
    """What this process sees: the CPU (model, effective flags, tier), cores it may use, memory and GPUs."""

    cpu_model: str
    cpu_flags: frozenset[str]
    cores: int
    memory_gib: float
    cap: str | None = None
    gpus: tuple[str, ...] = ()
    cuda_bf16: bool = False
    raw_flags: frozenset[str] = field(default_factory=frozenset)

    @property
    def cpu_capability(self) -> str:
        return cpu_capability(self.cpu_flags)

    @property
    def native_capability(self) -> str:
        return cpu_capability(self.raw_flags or self.cpu_flags)

    def precision(self, requested: str = "auto", device: str | None = None, stored: str | None = None) -> Precision:
        device = device or ("cuda" if self.gpus else "cpu")
        return resolve_precision(requested, device=device, cpu_flags=self.cpu_flags, cuda_bf16=self.cuda_bf16,
                                 stored=stored)

    def describe_cpu(self) -> str:
        """`Intel Xeon ... (amx)`, with the emulated tier when a cap holds the process below the real one."""
        if self.cap and self.cpu_capability != self.native_capability:
            return f"{self.cpu_model} ({self.native_capability}, held to {self.cpu_capability})"
        return f"{self.cpu_model} ({self.cpu_capability})"


def _memory_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return 0.0


@lru_cache(maxsize=1)
def cpu_flags_here() -> frozenset[str]:
    """This CPU's effective flags (capped as the module docstring says), without importing torch."""
    return effective_flags(_cpuinfo()[1], capability_cap())


@lru_cache(maxsize=1)
def this_machine() -> Machine:
    """The machine this process runs on (torch is imported only to ask about GPUs)."""
    model, raw = _cpuinfo()
    cap = capability_cap()
    gpus: tuple[str, ...] = ()
    cuda_bf16 = False
    try:
        import torch

        if torch.cuda.is_available():
            gpus = tuple(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
            cuda_bf16 = torch.cuda.get_device_capability(0)[0] >= 8  # Ampere and later
    except Exception:  # noqa: BLE001, S110 (no torch, or a CUDA driver that cannot be asked: a CPU machine)
        pass
    return Machine(cpu_model=model, cpu_flags=effective_flags(raw, cap), cores=usable_cores(),
                   memory_gib=round(_memory_gib(), 1), cap=cap, gpus=gpus, cuda_bf16=cuda_bf16, raw_flags=raw)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_threads_per_worker(requested: int | None, *, cores: int, workers_here: int) -> int:
    """Torch threads for each of `workers_here` processes computing on a node's `cores` cores: `requested` where
    set, else an equal share (at least one). Ray starts a worker with as many threads as CPUs it reserves (one by
    default), which leaves a single worker on a laptop computing on one core of many."""
    return requested if requested is not None else max(1, cores // max(1, workers_here))


def precision_here(requested: str = "auto", device: str | None = None, stored: str | None = None) -> Precision:
    """`resolve_precision` for this machine; `device` defaults to `cuda` where a GPU is visible."""
    return this_machine().precision(requested, device, stored)


def torch_dtype(precision: str):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[normalize_precision(precision)]
