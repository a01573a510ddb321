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


def thread_args(description: str | None = None, **int_options: int) -> argparse.Namespace:
    """`--threads` (default 1, applied to torch), `--repeats` (default 5) and a script's own integer options
    (`steps=60` adds `--steps`, default 60)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    for name, default in int_options.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=default)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    return args
