"""Synth throughput: the Ray Data pipeline against raw `vllm.LLM.chat`, and prefix-aware against naive
request building, over identical partial-mode requests (real Wikipedia sentences, bundled SmolLM2).

    SYNCSE_DATA_DIR=../shared/data .venv/bin/python benchmarks/synth_throughput.py            # a few minutes
    .venv/bin/python benchmarks/synth_throughput.py --rows 300 --chunk-size 100                # larger

Measures, in one process, one after another (never two engines busy at once):
  1. raw engine, naive requests (exemplars in sampled order, rows in input order), prefix caching on
  2. raw engine, prefix-aware requests (exemplar sets in pool order, each chunk grouped by prefix)
  3. `run_synth` on the same sentences and seed: the same requests as 2, through Ray Data actors
  4. with `--endpoint`: `run_synth` again, the endpoint writer (`synth.writer.kind: openai`) against `vllm serve`
     of the same model on loopback, started with the in-process engine's set-up (`engine.vllm_serve_command`,
     the same thread binding), every request of a chunk in flight at once (as the engine gets them)
Engine start-up is excluded everywhere (a pipeline's span runs from its first chunk's engine call, or first
request, to its last chunk's files being written). Goals: pipeline / raw >= 0.95; prefix-aware / naive >= 1.3;
endpoint / in-process pipeline >= 0.9.

Every figure carries the CPU it ran on (`describe_cpu()`, its capability tier, any ATEN_CPU_CAPABILITY /
ONEDNN_MAX_CPU_ISA cap), the engine's resolved dtype and the vLLM kernel library its engine process loaded
(`_C`: AVX512-BF16/AMX build, `_C_AVX512`, `_C_AVX2`). `--config configs/quickstart.yaml` measures the quickstart's
requests (its SNLI premises, candidates, sampling and engine set-up); `--skip-naive` runs only the prefix-aware
raw arm (benchmarks/engine_setups.py compares engine set-ups with it).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import tempfile
import time
from pathlib import Path

from syncse_ray.config import load_config
from syncse_ray.synth.filters import normalize
from syncse_ray.synth.prompts import (
    HARD_NEGATIVE,
    POSITIVE,
    annotation_request,
    load_prompt_pack,
    order_for_prefix_cache,
)

REPO = Path(__file__).resolve().parents[1]


def _sentences(path: Path, rows: int) -> list[str]:
    """The first `rows` distinct non-empty sentences of a text file, one a line (so staging drops none)."""
    seen, out = set(), []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if normalize(text) and normalize(text) not in seen and len(text.split()) <= 60:
            seen.add(normalize(text))
            out.append(text)
        if len(out) == rows:
            return out
    raise SystemExit(f"only {len(out)} usable sentences")


def _requests(sentences: list[str], *, seed: int, chunk_size: int, prefix_aware: bool,
              exemplar_sets: int | None = None):
    """Exactly the requests (and order) the pipeline builds for these rows."""
    pack = load_prompt_pack(None)
    out = []
    for start in range(0, len(sentences), chunk_size):
        chunk = [annotation_request(pack, row=row, text=sentences[row], kind=kind, run_seed=seed, num_exemplars=5,
                                    prefix_aware=prefix_aware, exemplar_sets=exemplar_sets)
                 for row in range(start, min(start + chunk_size, len(sentences))) for kind in (POSITIVE, HARD_NEGATIVE)]
        out += order_for_prefix_cache(chunk) if prefix_aware else chunk
    return out


def _loaded_vllm_kernels() -> list[str]:
    """The vLLM kernel libraries (`_C*.abi3.so`) mapped into the engine's processes (or this one): which ISA
    build vLLM chose. vLLM picks it from torch.cpu._is_avx512*_supported(), i.e. from cpuid, not from
    ATEN_CPU_CAPABILITY."""
    from syncse_ray.synth.engine import engine_processes

    found = set()
    for pid in [p.pid for p in engine_processes()] + [os.getpid()]:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
        found |= {Path(line.split()[-1]).name for line in maps.splitlines()
                  if "/vllm/_C" in line and line.split()[-1].endswith(".so")}
    return sorted(found)


def _machine_record(cfg) -> dict:
    """What every figure ran on: the CPU as this process sees it and the dtype the engine was built with."""
    import torch

    from syncse_ray.hardware import this_machine
    from syncse_ray.synth.engine import engine_dtype

    machine = this_machine()
    return {"cpu": machine.describe_cpu(), "cpu_capability": machine.cpu_capability,
            "native_capability": machine.native_capability, "capability_cap": machine.cap,
            "emulated": machine.cpu_capability != machine.native_capability,
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "engine_dtype": engine_dtype(cfg.synth.engine, on_cpu=True),
            "ld_preload": os.environ.get("LD_PRELOAD", ""),
            "vllm_isa_overridden": os.environ.get("SYNCSE_BENCH_VLLM_ISA", "")}


def _raw_run(llm, cfg, requests, chunk_size: int) -> dict:
    """One `LLM.chat` call per chunk with `synth.candidates` samples a request (as the pipeline does), prefix
    cache emptied first."""
    from vllm import SamplingParams

    llm.reset_prefix_cache()
    sampling = {POSITIVE: cfg.synth.positive_sampling, HARD_NEGATIVE: cfg.synth.hard_negative_sampling}
    per_call = 2 * chunk_size
    out_tokens = prompt_tokens = by_length = candidates = 0
    start = time.perf_counter()
    for i in range(0, len(requests), per_call):
        batch = requests[i:i + per_call]
        params = [SamplingParams(n=cfg.synth.candidates, temperature=sampling[r.kind].temperature,
                                 top_p=sampling[r.kind].top_p,
                                 presence_penalty=sampling[r.kind].presence_penalty,
                                 frequency_penalty=sampling[r.kind].frequency_penalty,
                                 max_tokens=sampling[r.kind].max_tokens, seed=r.seed) for r in batch]
        for o in llm.chat([r.messages for r in batch], params, use_tqdm=False):
            out_tokens += sum(len(c.token_ids) for c in o.outputs)  # k candidates a request, as the pipeline
            prompt_tokens += len(o.prompt_token_ids)
            by_length += sum(c.finish_reason == "length" for c in o.outputs)  # cut at max_tokens
            candidates += len(o.outputs)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "requests": len(requests), "output_tokens": out_tokens,
            "prompt_tokens": prompt_tokens, "output_tokens_per_s": out_tokens / seconds,
            "requests_per_s": len(requests) / seconds, "candidates": candidates,
            "candidates_cut_at_max_tokens": by_length, "load_average_1m_at_end": os.getloadavg()[0]}


def _pipeline_run(cfg) -> dict:
    from syncse_ray.synth import run_synth

    result = run_synth(cfg)
    summaries = [json.loads(p.read_text())
                 for p in sorted((result.output_dir / "work" / "annotate" / "done").glob("chunk-*.json"))]
    span = max(s["finished_at"] for s in summaries) - min(s["generate_started_at"] for s in summaries)
    out_tokens = sum(s["output_tokens"] for s in summaries)
    requests = sum(s["requests"] for s in summaries)
    return {"seconds": span, "requests": requests, "output_tokens": out_tokens,
            "prompt_tokens": sum(s["prompt_tokens"] for s in summaries),
            "output_tokens_per_s": out_tokens / span, "requests_per_s": requests / span,
            "kept": result.kept, "dropped": result.dropped}


def _endpoint_run(cfg, model_path: Path, chunk_size: int, work: Path) -> dict:
    """`_pipeline_run` through `vllm serve` (started here, stopped after) instead of the in-process engine."""
    import signal
    import socket
    import subprocess
    import sys

    import httpx

    from syncse_ray.synth.engine import cpu_binding_env, vllm_serve_command

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    served = "writer"
    cmd = vllm_serve_command(sys.executable, model_path, cfg.synth.engine, port=port, served_model_name=served,
                             on_cpu=True, seed=cfg.seed)
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **cpu_binding_env(cfg.synth.engine)}
    log = work / "vllm-serve.log"
    with log.open("w") as sink:
        server = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"vllm serve did not start: {log}\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        writer = cfg.synth.writer.model_copy(update={"kind": "openai", "base_url": f"http://127.0.0.1:{port}/v1",
                                                     "model": served, "max_concurrency": 2 * chunk_size})
        endpoint_cfg = cfg.model_copy(update={"run_dir": work / "endpoint-run",
                                              "synth": cfg.synth.model_copy(update={"writer": writer})})
        return {**_pipeline_run(endpoint_cfg), "server_command": " ".join(cmd[1:])}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=48, help="input sentences (2 requests each)")
    parser.add_argument("--chunk-size", type=int, default=24, help="rows per chunk / engine call")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("SYNCSE_DATA_DIR", "../shared/data")))
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "synth_partial_cpu.yaml",
                        help="recipe whose synth settings and synth.input sentences (a text file) are measured, "
                             "e.g. configs/quickstart.yaml")
    parser.add_argument("--skip-naive", action="store_true", help="only the prefix-aware raw arm (and the others asked)")
    parser.add_argument("--warmup-rows", type=int, default=8, help="sentences of the untimed warm-up call")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "synth_throughput.json")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every run, e.g. synth.engine.cpu_threads_bind=0-1")
    parser.add_argument("--raw-only", action="store_true", help="skip the pipeline runs")
    parser.add_argument("--endpoint", action="store_true",
                        help="also the endpoint writer through `vllm serve` of the same model (after the pipeline)")
    parser.add_argument("--exemplar-sets", type=int, default=8,
                        help="also a raw run with synth.exemplar_sets=N (fixed exemplar sets; 0: skip it)")
    args = parser.parse_args()

    recipe = load_config(args.config, [f"data_dir={args.data_dir}", *args.overrides])
    if recipe.synth.input_format not in ("text", "auto") or (
            recipe.synth.input_format == "auto" and Path(recipe.synth.input).suffix in (".jsonl", ".parquet", ".csv")):
        raise SystemExit(f"{args.config}: synth.input must be a text file, one sentence a line")
    sentences = _sentences(Path(recipe.synth.input), args.rows)
    work = Path(tempfile.mkdtemp(prefix="synth-bench-"))
    input_path = work / "sentences.txt"
    input_path.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    cfg = load_config(args.config, [f"data_dir={args.data_dir}",
        f"run_dir={work / 'run'}", f"synth.input={input_path}", "synth.limit=null",
        f"synth.chunk_size={args.chunk_size}", f"seed={args.seed}", "synth.prefix_aware_requests=true",
        *args.overrides])

    from syncse_ray.models.references import resolve_model
    from syncse_ray.synth.engine import build_llm

    machine = _machine_record(cfg)
    llm = build_llm(resolve_model(cfg.synth.model, cfg.cache_dir), cfg.synth.engine, seed=args.seed)
    machine["vllm_kernels"] = _loaded_vllm_kernels()
    warm = args.warmup_rows
    _raw_run(llm, cfg, _requests(sentences[:warm], seed=args.seed, chunk_size=warm, prefix_aware=True), warm)
    naive = None
    if not args.skip_naive:
        naive = _raw_run(llm, cfg, _requests(sentences, seed=args.seed, chunk_size=args.chunk_size,
                                             prefix_aware=False), args.chunk_size)
    aware = _raw_run(llm, cfg, _requests(sentences, seed=args.seed, chunk_size=args.chunk_size,
                                         prefix_aware=True), args.chunk_size)
    fixed = None
    if args.exemplar_sets:
        fixed = _raw_run(llm, cfg, _requests(sentences, seed=args.seed, chunk_size=args.chunk_size,
                                             prefix_aware=True, exemplar_sets=args.exemplar_sets), args.chunk_size)
    del llm
    gc.collect()

    engine = cfg.synth.engine
    setup = {"config": str(args.config), "candidates": cfg.synth.candidates,
             "max_tokens": [cfg.synth.positive_sampling.max_tokens, cfg.synth.hard_negative_sampling.max_tokens],
             "max_num_seqs": engine.max_num_seqs, "cpu_threads_bind": engine.cpu_threads_bind,
             "kv_cache_memory_bytes": engine.kv_cache_memory_bytes, "dtype_setting": engine.dtype}
    for run in (naive, aware, fixed):
        if run is not None:
            run.update(machine)  # every figure says what it ran on
    report = {"rows": args.rows, "chunk_size": args.chunk_size, "overrides": args.overrides, "machine": machine,
              "setup": setup, "raw_prefix_aware": aware}
    if naive is not None:
        report["raw_naive"] = naive
    if fixed is not None:
        report["raw_fixed_exemplar_sets"] = fixed
        report["exemplar_sets"] = args.exemplar_sets
        if naive is not None:
            report["fixed_sets_vs_naive_requests_per_s"] = fixed["requests_per_s"] / naive["requests_per_s"]
    if not args.raw_only:
        from syncse_ray.runtime.ray_env import init_ray

        init_ray(cfg.ray)
        pipeline = _pipeline_run(cfg)
        pipeline.update({**machine, "vllm_kernels": []})  # its engine is in a Ray actor: kernels not read
        report["pipeline_prefix_aware"] = pipeline
        report["pipeline_vs_raw_output_tokens_per_s"] = pipeline["output_tokens_per_s"] / aware["output_tokens_per_s"]
        if args.endpoint:
            endpoint = _endpoint_run(cfg, resolve_model(cfg.synth.model, cfg.cache_dir), args.chunk_size, work)
            endpoint.update({**machine, "vllm_kernels": []})
            report["endpoint_vllm_serve"] = endpoint
            report["endpoint_vs_pipeline_output_tokens_per_s"] = (endpoint["output_tokens_per_s"]
                                                                  / pipeline["output_tokens_per_s"])
    if naive is not None:
        report.update({
            "prefix_aware_vs_naive_requests_per_s": aware["requests_per_s"] / naive["requests_per_s"],
            "prefix_aware_vs_naive_output_tokens_per_s": aware["output_tokens_per_s"] / naive["output_tokens_per_s"],
        })
    report["load_average_1m_at_end"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"cpu: {machine['cpu']}  engine dtype: {machine['engine_dtype']}  vLLM kernels: "
          f"{', '.join(machine['vllm_kernels']) or '?'}  torch: {machine['torch_cpu_capability']}")
    for name in ("raw_naive", "raw_prefix_aware", "raw_fixed_exemplar_sets", "pipeline_prefix_aware",
                 "endpoint_vllm_serve"):
        if name not in report:
            continue
        r = report[name]
        print(f"{name:24s} {r['requests']:5d} req {r['seconds']:7.1f} s  {r['requests_per_s']:6.2f} req/s  "
              f"{r['output_tokens_per_s']:7.1f} out tok/s  ({r['prompt_tokens']} prompt / {r['output_tokens']} out)  "
              f"[{r['cpu_capability']}{' emulated' if r['emulated'] else ''}, {r['engine_dtype']}]")
    if "pipeline_vs_raw_output_tokens_per_s" in report:
        print(f"pipeline / raw (output tok/s):        {report['pipeline_vs_raw_output_tokens_per_s']:.3f}  "
              "(goal >= 0.95)")
    if "endpoint_vs_pipeline_output_tokens_per_s" in report:
        print(f"endpoint / in-process pipeline (output tok/s): "
              f"{report['endpoint_vs_pipeline_output_tokens_per_s']:.3f}  (goal >= 0.9)")
    if naive is not None:
        print(f"prefix-aware / naive (requests/s):    {report['prefix_aware_vs_naive_requests_per_s']:.3f}  "
              "(goal >= 1.3)")
    if fixed is not None and naive is not None:
        print(f"{args.exemplar_sets} fixed exemplar sets / naive (requests/s): "
              f"{report['fixed_sets_vs_naive_requests_per_s']:.3f}  (goal >= 1.3)")
    print(f"report: {args.out}")


if __name__ == "__main__":
    main()
