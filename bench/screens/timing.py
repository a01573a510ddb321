"""What the timing screens share: a warmed-up mean time, and the one-thread command line they take."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch


def seconds(fn: Callable[[], object], repeats: int) -> float:
    """Mean wall time of `fn` over `repeats` calls after one warm-up call."""
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def thread_args(description: str | None = None) -> argparse.Namespace:
    """`--threads` (default 1, applied to torch) and `--repeats` (default 5)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    return args
