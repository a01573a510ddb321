"""bf16 and float32 matmul throughput on this CPU for the shapes of a SmolLM2 layer at B = 8, L + T - 1 = 29
(docs/benchmarks.md §5, §6): on a CPU without AVX512-BF16 or AMX the bf16 rows are emulated.

Usage: python bench/screens/matmul_peak.py
"""

import time

import torch
import torch.nn.functional as F


def milliseconds(fn, repeats: int = 30) -> float:
    fn(), fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e3


for threads in (1, 2):
    torch.set_num_threads(threads)
    for dtype in (torch.bfloat16, torch.float32):
        for rows, inner, outer in ((232, 576, 1536), (232, 1536, 576), (160, 576, 49152), (80, 49135, 576)):
            x, weight = torch.randn(rows, inner, dtype=dtype), torch.randn(outer, inner, dtype=dtype)
            ms = milliseconds(lambda: F.linear(x, weight))
            print(f"{threads} thread(s) ({rows} x {inner}) @ ({inner} x {outer}) {str(dtype)[6:]}: {ms:7.2f} ms, "
                  f"{2 * rows * inner * outer / ms / 1e6:5.0f} GFLOP/s")
