"""The precision rule (capability flags in, precision out), the emulation caps, `syncse env`, and the warning for
an explicit bf16 on a CPU without it. None of it needs either kind of machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from syncse_ray.hardware import (
    capability_cap,
    cpu_capability,
    effective_flags,
    normalize_precision,
    resolve_precision,
    slow_precision_warning,
)

AMX = {"fma", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"}
AVX512_BF16 = {"fma", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512_bf16"}
AVX512 = {"fma", "avx2", "avx512f", "avx512bw", "avx512vl"}
AVX2 = {"fma", "avx2", "avx"}  # AMD EPYC / most laptops
REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("flags", "tier", "cpu_auto"), [
    (AMX, "amx", "bf16"), (AVX512_BF16, "avx512_bf16", "bf16"), (AVX512, "avx512", "fp32"), (AVX2, "avx2", "fp32"),
    (set(), "baseline", "fp32")])
def test_cpu_auto_is_bf16_only_with_native_bf16(flags, tier, cpu_auto):
    assert cpu_capability(flags) == tier
    assert resolve_precision("auto", device="cpu", cpu_flags=flags) == cpu_auto


def test_cuda_auto_is_bf16_where_the_gpu_has_it_else_fp16():
    assert resolve_precision("auto", device="cuda", cuda_bf16=True) == "bf16"
    assert resolve_precision("auto", device="cuda:0", cuda_bf16=False) == "fp16"


def test_an_explicit_value_wins_and_dtype_names_are_read():
    assert resolve_precision("bf16", device="cpu", cpu_flags=AVX2) == "bf16"
    assert resolve_precision("float32", device="cuda", cuda_bf16=True) == "fp32"
    assert [normalize_precision(n) for n in ("bfloat16", "half", "FP32", "auto")] == ["bf16", "fp16", "fp32", "auto"]
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        normalize_precision("fp8")


@pytest.mark.parametrize(("stored", "flags", "expected"), [
    ("bf16", AMX, "bf16"), ("bf16", AVX2, "fp32"), ("fp32", AMX, "fp32"), ("fp16", AVX2, "fp32")])
def test_an_encoder_keeps_its_checkpoints_precision_within_the_rule(stored, flags, expected):
    assert resolve_precision("auto", device="cpu", cpu_flags=flags, stored=stored) == expected


def test_encoder_auto_on_an_older_gpu_runs_bf16_weights_in_fp16():
    assert resolve_precision("auto", device="cuda", cuda_bf16=False, stored="bf16") == "fp16"
    assert resolve_precision("auto", device="cuda", cuda_bf16=True, stored="fp32") == "fp32"


def test_torch_and_onednn_caps_hold_an_amx_machine_to_avx2():
    assert capability_cap({}) is None
    assert capability_cap({"ATEN_CPU_CAPABILITY": "avx2"}) == "avx2"
    assert capability_cap({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}) == "avx512"
    assert capability_cap({"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX2"}) == "avx2"
    held = effective_flags(AMX, "avx2")
    assert cpu_capability(held) == "avx2" and resolve_precision("auto", device="cpu", cpu_flags=held) == "fp32"
    assert cpu_capability(effective_flags(AMX, "avx512")) == "avx512"
    assert effective_flags(AMX, None) == frozenset(AMX)


def test_bf16_on_a_cpu_without_it_warns_with_what_auto_would_choose():
    message = slow_precision_warning("bf16", device="cpu", cpu_flags=AVX2)
    assert message and "several times slower" in message and "fp32" in message and "avx2" in message
    assert slow_precision_warning("bf16", device="cpu", cpu_flags=AMX) is None
    assert slow_precision_warning("auto", device="cpu", cpu_flags=AVX2) is None
    assert slow_precision_warning("bf16", device="cuda", cpu_flags=AVX2) is None


def test_engine_dtype_follows_the_cpu():
    from syncse_ray.config.synth import EngineConfig
    from syncse_ray.synth.engine import engine_kwargs

    auto = EngineConfig()
    assert engine_kwargs("m", auto, on_cpu=True, cpu_flags=AMX)["dtype"] == "bfloat16"
    assert engine_kwargs("m", auto, on_cpu=True, cpu_flags=AVX2)["dtype"] == "float32"
    assert engine_kwargs("m", auto, on_cpu=False)["dtype"] == "auto"
    assert engine_kwargs("m", EngineConfig(dtype="bfloat16"), on_cpu=True, cpu_flags=AVX2)["dtype"] == "bfloat16"


def _syncse(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "syncse_ray.cli", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120, check=False)


def test_syncse_env_names_the_capability_and_what_each_stage_resolves_to():
    out = _syncse("env", "configs/quickstart.yaml", "--json", env_extra={"ATEN_CPU_CAPABILITY": "avx2"})
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["cpu"]["capability"] in ("avx2", "baseline") and info["cores"] >= 1
    assert {"torch", "ray", "transformers"} <= set(info["versions"])
    resolved = {row["setting"]: row["resolves to"] for row in info["precision"]}
    assert resolved["train.precision"] == "fp32" and resolved["synth.engine.dtype"] == "float32"


def test_an_explicit_bf16_warns_once_on_the_console_and_a_bad_one_is_a_config_error():
    out = _syncse("config", "show", "configs/quickstart.yaml", "--set", "train.precision=bf16",
                  env_extra={"ATEN_CPU_CAPABILITY": "avx2"})
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("warning:") == 1 and "train.precision" in out.stderr and "fp32" in out.stderr
    bad = _syncse("config", "show", "configs/quickstart.yaml", "--set", "synth.engine.dtype=int3")
    assert bad.returncode == 2 and "synth.engine.dtype" in bad.stderr and "unknown precision" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_a_resumed_auto_run_keeps_the_precision_its_checkpoints_were_written_in(monkeypatch, capsys):
    import syncse_ray.hardware as hw
    from syncse_ray.train.loop import _run_precision

    avx2 = hw.Machine(cpu_model="AMD EPYC", cpu_flags=frozenset(AVX2), cores=2, memory_gib=8.0)
    monkeypatch.setattr(hw, "this_machine", lambda: avx2)
    assert _run_precision("auto", "cpu", None, rank=0) == "fp32"  # a new run here
    assert _run_precision("auto", "cpu", {"step": 4, "precision": "bf16"}, rank=0) == "bf16"  # started on AMX
    assert "resumes in bf16" in capsys.readouterr().out
    assert _run_precision("fp32", "cpu", {"step": 4, "precision": "bf16"}, rank=0) == "fp32"  # explicit wins
    assert _run_precision("auto", "cpu", {"step": 4}, rank=0) == "fp32"  # a checkpoint from before the record


def test_cpu_workers_share_their_nodes_cores_unless_told():
    from syncse_ray.hardware import cpu_threads_per_worker

    assert cpu_threads_per_worker(None, cores=2, workers_here=1) == 2  # Ray alone: 1 (the CPU it reserves)
    assert cpu_threads_per_worker(None, cores=16, workers_here=4) == 4
    assert cpu_threads_per_worker(None, cores=2, workers_here=3) == 1
    assert cpu_threads_per_worker(3, cores=2, workers_here=1) == 3
