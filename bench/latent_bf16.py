"""Time N latent SFT steps and one greedy evaluation in float32 and under bf16 autocast (`autocast_bf16`).

python bench/latent_bf16.py --model DIR --data DIR [--steps 20] [--train ...] [--val ...] [--threads N]

Both modes start from the same weights and filter (same seed) and see the same batches; each trains
through `train_sft` (the guarded loop, clipping included) and is then evaluated in its own precision.
Prints one JSON line: per mode, sft_s (N steps, from the call to the last step), sft_s_per_step
(steady state: steps 2..N, so the first call's one-off costs are left out), the first and last loss,
eval_s and accuracy. bf16 can only pay off on CPUs with native bf16 (lscpu: avx512_bf16, amx_bf16)
and models large enough for the matmuls to outweigh the casts; the tiny test model is slower in bf16.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import torch

from softtoken.latent import options as opts
from softtoken.latent.checkpoint import load_latent_model
from softtoken.latent.data import load_rows, prepare_sft_rows
from softtoken.latent.evaluate import evaluate
from softtoken.latent.lora import prepare_trainable
from softtoken.latent.sft import build_pairs, train_sft

_NEVER = 10**9  # val_period / save_checkpoint_period: no validation or checkpoint inside the timed steps


class StepClock:
    """A tracker that keeps when each step finished and its loss."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.losses: list[float] = []

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        self.times.append(time.perf_counter())
        self.losses.append(metrics["loss/total"])

    def close(self) -> None:
        return None


def run_mode(args: argparse.Namespace, bf16: bool) -> dict[str, float]:
    flag = "/autocast_bf16" if bf16 else ""
    config = opts.resolve("sft", f"{args.train}/steps_{args.steps}/val_period_{_NEVER}/"
                                 f"save_checkpoint_period_{_NEVER}{flag}")
    eval_config = opts.resolve("eval", args.val + flag)
    model, tokenizer = load_latent_model(args.model, opts.resolve("latent", args.latent), config.seed)
    prepare_trainable(model, opts.resolve("lora", args.lora), latent_run=config.is_latent, seed=config.seed)
    pairs = build_pairs(prepare_sft_rows(load_rows(args.data, config.data_name, "train"), config), tokenizer,
                        model, config)
    val_rows = load_rows(args.data, eval_config.data_name, eval_config.split, numeric_answers=True)
    clock = StepClock()
    with tempfile.TemporaryDirectory() as run_dir:
        started = time.perf_counter()
        # One validation row: train_sft's closing evaluation is not what is timed here.
        train_sft(model, tokenizer, pairs, val_rows[:1], config, eval_config, Path(run_dir), tracker=clock)
    steady = (clock.times[-1] - clock.times[0]) / (args.steps - 1) if args.steps > 1 else float("nan")
    started_eval = time.perf_counter()
    result = evaluate(model, tokenizer, val_rows, eval_config)
    return {"sft_s": round(clock.times[-1] - started, 3), "sft_s_per_step": round(steady, 4),
            "loss_first": clock.losses[0], "loss_last": clock.losses[-1],
            "eval_s": round(time.perf_counter() - started_eval, 3), "eval_n": result.n, "accuracy": result.accuracy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="exported latent model or base model directory")
    parser.add_argument("--data", required=True, help="directory with train.jsonl and validation.jsonl")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--train", default="latent_flat_3/batch_size_16/lr_1e-3",
                        help="SFT option string without steps, val_period, save_checkpoint_period, autocast_bf16")
    parser.add_argument("--val", default="gsm8k-aug-val/latent_thinking/max_examples_64",
                        help="eval option string without autocast_bf16")
    parser.add_argument("--latent", default="", help="latent settings string")
    parser.add_argument("--lora", default="", help="LoRA option string; empty = full fine-tuning")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    results = {"float32": run_mode(args, bf16=False), "bf16": run_mode(args, bf16=True)}
    print(json.dumps({"steps": args.steps, "threads": torch.get_num_threads(), **results}))


if __name__ == "__main__":
    main()
