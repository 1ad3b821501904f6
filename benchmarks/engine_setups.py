"""Raw vLLM CPU-engine output tokens/s for several engine set-ups, side by side, on the quickstart's requests.

    flock /tmp/syncse-heavy.lock env SYNCSE_DATA_DIR=/work/shared/data \\
        .venv/bin/python benchmarks/engine_setups.py [--rows 16] [--only NAME ...]

Each set-up runs `benchmarks/synth_throughput.py --config configs/quickstart.yaml --raw-only --skip-naive
--exemplar-sets 0` in a process of its own (one engine at a time, one after another), on the same sentences and
seeds, and the table lists output tokens/s and requests/s with the CPU tier (native or emulated), the resolved
engine dtype and the vLLM kernel library the engine loaded. Reports: runs/bench/engine_setups/<name>.json and
runs/bench/engine_setups.json.

Emulating an AVX2-only CPU on an AMX one takes two levels:
  * `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2` hold torch's kernels and oneDNN (also the copy statically
    linked into vLLM's `_C`, which does vLLM's big linears) to AVX2, and make `dtype: auto` resolve to fp32. vLLM
    still loads its AVX512-BF16/AMX kernel library (`_C`) and picks AMX attention and AMX small GEMMs for bf16:
    it chooses from `torch.cpu._is_avx512*_supported()` / `_is_amx_tile_supported()`, i.e. from cpuid.
  * the `+vllm-avx2` set-ups also make those four torch queries answer False in every process of the run (a
    `sitecustomize` on PYTHONPATH, SYNCSE_BENCH_VLLM_ISA=avx2), so vLLM loads `_C_AVX2` and its vector attention,
    as it would on an AVX2-only CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_LIB = Path(sys.prefix) / "lib"
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
SITECUSTOMIZE = '''\
import os
if os.environ.get("SYNCSE_BENCH_VLLM_ISA") == "avx2":  # benchmarks/engine_setups.py: vLLM as on an AVX2-only CPU
    import torch.cpu
    for _name in ("_is_avx512_supported", "_is_avx512_bf16_supported", "_is_amx_tile_supported",
                  "_is_amx_fp16_supported"):
        setattr(torch.cpu, _name, lambda: False)
'''


def _preload() -> str:
    """tcmalloc (the system's libtcmalloc-minimal4 / libtcmalloc) and Intel OpenMP (the venv's intel-openmp) for
    LD_PRELOAD: those that exist here."""
    found = []
    for patterns, folders in ((("libtcmalloc_minimal.so.4", "libtcmalloc.so.4"),
                               (Path("/usr/lib/x86_64-linux-gnu"), Path("/usr/lib64"), VENV_LIB)),
                              (("libiomp5.so",), (VENV_LIB,))):
        hits = [folder / pattern for pattern in patterns for folder in folders if (folder / pattern).exists()]
        if hits:
            found.append(str(hits[0]))
    return ":".join(found)


# name -> (extra env, config overrides); the first is the quickstart as it ships (dtype auto, cpu_threads_bind all,
# max_num_seqs 64, max_tokens 96, 4 candidates a request).
SETUPS: dict[str, tuple[dict[str, str], list[str]]] = {
    "quickstart": ({}, []),
    "fp32": ({}, ["synth.engine.dtype=fp32"]),
    "bind-auto": ({}, ["synth.engine.cpu_threads_bind=null"]),
    "max_num_seqs=128": ({}, ["synth.engine.max_num_seqs=128"]),
    "kv=256MiB": ({}, [f"synth.engine.kv_cache_memory_bytes={256 << 20}"]),
    "max_tokens=64": ({}, ["synth.positive_sampling.max_tokens=64", "synth.hard_negative_sampling.max_tokens=64"]),
    "candidates=2": ({}, ["synth.candidates=2"]),
    "preload": ({"LD_PRELOAD": "@preload"}, []),
    "avx2:auto": (AVX2, []),
    "avx2:bf16": (AVX2, ["synth.engine.dtype=bf16"]),
    "avx2+vllm-avx2:auto": ({**AVX2, "SYNCSE_BENCH_VLLM_ISA": "avx2"}, []),
    "avx2+vllm-avx2:bf16": ({**AVX2, "SYNCSE_BENCH_VLLM_ISA": "avx2"}, ["synth.engine.dtype=bf16"]),
}


def run_setup(name: str, args, site_dir: Path) -> dict:
    extra, overrides = SETUPS[name]
    env = dict(os.environ)
    for key, value in extra.items():
        if value == "@preload":
            value = _preload()
            if not value:
                return {"setup": name, "skipped": "no tcmalloc / libiomp5 found"}
        env[key] = value
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site_dir), str(REPO), env.get("PYTHONPATH", "")]))
    out = args.out_dir / f"{name.replace(':', '_').replace('=', '-').replace('+', '_')}.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "synth_throughput.py"), "--config", str(args.config),
           "--raw-only", "--skip-naive", "--exemplar-sets", "0", "--rows", str(args.rows),
           "--chunk-size", str(args.rows), "--warmup-rows", str(args.warmup_rows), "--out", str(out)]
    for item in overrides + args.overrides:
        cmd += ["--set", item]
    log = args.out_dir / (out.stem + ".log")
    started = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO,
                                start_new_session=True)
        try:
            proc.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)  # the process group this call started: the run and its engine
            proc.wait(timeout=30)
            return {"setup": name, "skipped": f"over {args.timeout} s (log {log})",
                    "wall_s": time.perf_counter() - started}
    if proc.returncode != 0:
        return {"setup": name, "skipped": f"exit {proc.returncode} (log {log})"}
    report = json.loads(out.read_text())
    row = {"setup": name, "env": {k: env[k] for k in extra}, "overrides": overrides,
           "wall_s": time.perf_counter() - started, **report["raw_prefix_aware"]}
    row["vllm_kernels"] = report["machine"].get("vllm_kernels", [])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "quickstart.yaml")
    parser.add_argument("--rows", type=int, default=16, help="sentences, all in one engine call (2 requests each)")
    parser.add_argument("--warmup-rows", type=int, default=2)
    parser.add_argument("--only", nargs="*", choices=list(SETUPS), help="these set-ups (default: all)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--timeout", type=float, default=300, help="seconds a set-up may take, start-up included")
    parser.add_argument("--out-dir", type=Path, default=REPO / "runs" / "bench" / "engine_setups")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    site_dir = Path(tempfile.mkdtemp(prefix="engine-setups-site-"))
    (site_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)

    rows = []
    for name in args.only or list(SETUPS):
        row = run_setup(name, args, site_dir)
        rows.append(row)
        if "skipped" in row:
            print(f"{name:22s} skipped: {row['skipped']}", flush=True)
        else:
            print(f"{name:22s} {row['cpu_capability']:>11s}{' (emulated)' if row['emulated'] else ' (native)  '} "
                  f"{row['engine_dtype']:>8s}  {row['output_tokens_per_s']:7.1f} out tok/s  "
                  f"{row['requests_per_s']:5.2f} req/s  {row['seconds']:6.1f} s  {row['output_tokens']} out tok  "
                  f"cut {row['candidates_cut_at_max_tokens']}/{row['candidates']}  "
                  f"{','.join(row['vllm_kernels'])}  load {row['load_average_1m_at_end']:.1f}  "
                  f"(wall {row['wall_s']:.0f} s)", flush=True)
    summary = args.out_dir.parent / "engine_setups.json"
    summary.write_text(json.dumps({"config": str(args.config), "rows": args.rows, "setups": rows}, indent=2))
    print("\n| set-up | CPU kind | engine dtype | vLLM kernels | output tok/s | requests/s | s | output tokens |")
    print("| --- | --- | --- | --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        if "skipped" in row:
            print(f"| {row['setup']} | | | | skipped: {row['skipped']} | | | |")
            continue
        kind = (f"emulated {row['cpu_capability'].upper()} on {row['native_capability'].upper()}"
                if row["emulated"] else f"native {row['cpu_capability'].upper()}")
        print(f"| {row['setup']} | {kind} | {row['engine_dtype']} | {','.join(row['vllm_kernels'])} | "
              f"{row['output_tokens_per_s']:.1f} | {row['requests_per_s']:.2f} | {row['seconds']:.1f} | "
              f"{row['output_tokens']} |")
    print(f"report: {summary}")


if __name__ == "__main__":
    main()
