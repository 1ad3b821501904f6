"""The yardstick for CPU kinds: one thread of `torch.nn.functional.linear` (64×576 @ 576×1536, SmolLM2's MLP shape)
in fp32 and bf16, GFLOP/s. On a CPU with native bf16 (AMX) bf16 is several times fp32; on an AVX2-only CPU it is
several times slower. Run it held to AVX2 to see how far the emulation goes:

    .venv/bin/python benchmarks/cpu_matmul.py
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python benchmarks/cpu_matmul.py
"""

from __future__ import annotations

import time

import torch

from syncse_ray.hardware import this_machine


def gflops(dtype: torch.dtype, calls: int = 200) -> float:
    x, w = torch.randn(64, 576).to(dtype), torch.randn(1536, 576).to(dtype)
    for _ in range(5):
        torch.nn.functional.linear(x, w)
    start = time.perf_counter()
    for _ in range(calls):
        torch.nn.functional.linear(x, w)
    return 2 * 64 * 576 * 1536 * calls / (time.perf_counter() - start) / 1e9


if __name__ == "__main__":
    torch.set_num_threads(1)
    fp32, bf16 = gflops(torch.float32), gflops(torch.bfloat16)
    print(f"{this_machine().describe_cpu()}: fp32 {fp32:.1f} GFLOP/s, bf16 {bf16:.1f} GFLOP/s, bf16/fp32 "
          f"{bf16 / fp32:.2f}")
