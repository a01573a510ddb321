"""What the screens that run a method on stored targets share: their command line and the targets it names."""

from __future__ import annotations

import argparse

import torch

from softtoken.data.targets import Target, load_targets


def targets_args(description: str | None = None, **int_options: int) -> tuple[argparse.Namespace, dict[str, Target]]:
    """TARGETS (a stored target set) and IDS, `--seed` (default 0), `--threads` (default 1, applied to torch) and a
    script's own integer options (`steps=160` adds `--steps`, default 160); returns them and the named targets by
    id, or exits with one line naming the unknown ids."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("targets")
    parser.add_argument("ids", nargs="+")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    for name, default in int_options.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=default)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    samples = {target.id: target for target in load_targets(args.targets).targets}
    unknown = [name for name in args.ids if name not in samples]
    if unknown:
        raise SystemExit(f"unknown target ids {unknown}; the set has {sorted(samples)}")
    return args, {name: samples[name] for name in args.ids}
