"""dlmi-paper step time: softtoken against a straightforward implementation, side by side in one process.

The straightforward step is what a first implementation of the paper's method looks like: dense (B, L, V)
float32 Gumbel-softmax over the whole vocabulary, logits for every position of [prompt ; target]
(`logits_to_keep` unused), hidden states of every layer returned, Adam on the logits and the per-position
temperatures. softtoken's step is `DLMI(dlmi_paper())` as shipped (float32), the same with
`compute_dtype="bfloat16"` (autocast over a bf16-weight copy on a CPU: AVX512-BF16 on this one), and that with
`compile_model=True` (decoder layers through torch.compile; its one-off compile happens in the warm-up run and is
reported apart). Batch 8, target 20, prompt 10 and 80; variants run interleaved, `--repeats` times, and the median
per-step time is kept.

Usage: python bench/step_speed.py [--steps 4] [--repeats 3] [--lengths 10 80] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from softtoken.lm.softlm import SoftLM, as_softlm
from softtoken.methods import DLMI, Budget, Problem, dlmi_paper

BATCH, TARGET_TEXT = 8, (" Paris is the capital and most populous city of France, with an estimated population of"
                         " more than two million residents")


def straightforward_seconds(lm: SoftLM, prompt_length: int, target: torch.Tensor, steps: int) -> float:
    """Seconds per step of a plain DLMI loop: full vocabulary, full-sequence logits, hidden states kept."""
    generator = torch.Generator().manual_seed(0)
    embedding = lm.model.get_input_embeddings().weight.detach()  # (V_full, D)
    vocab = embedding.shape[0]
    z = torch.zeros(1, prompt_length, vocab, requires_grad=True)
    theta = torch.rand(1, prompt_length, 1, generator=generator).requires_grad_(True)
    optimizer = torch.optim.Adam([z, theta], lr=0.1)
    target_embeds = embedding[target[:-1]].expand(BATCH, -1, -1)

    def step() -> None:
        uniform = torch.rand(BATCH, prompt_length, vocab, generator=generator)
        gumbel = -torch.log(-torch.log(uniform + 1e-10) + 1e-10)
        tau = 100.0 * (1.0 + torch.tanh(theta)) + 1e-10
        probs = torch.softmax((z.expand(BATCH, -1, -1) + gumbel) / tau, dim=-1)  # (B, L, V) float32
        inputs = torch.cat([probs @ embedding, target_embeds], dim=1)
        out = lm.model(inputs_embeds=inputs, output_hidden_states=True, use_cache=False)
        logits = out.logits[:, prompt_length - 1:]  # (B, T, V_full), from logits of every position
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.repeat(BATCH))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def softtoken_seconds(lm: SoftLM, config, prompt_length: int, *, target: torch.Tensor, steps: int) -> float:
    """(t(1 + N steps) - t(1 step)) / N of the shipped DLMI, so set-up and final evaluation cancel out."""
    config = dataclasses.replace(config, eval_every=10_000)
    problem = Problem(lm=lm, target_ids=tuple(target.tolist()), prompt_length=prompt_length, seed=0)

    def run(n: int) -> float:
        start = time.perf_counter()
        DLMI(config).run(problem, Budget(steps=n))
        return time.perf_counter() - start

    run(1)
    return (run(1 + steps) - run(1)) / steps


def bf16_fidelity(lm: SoftLM, prompt_length: int, target: torch.Tensor) -> dict[str, float]:
    """Loss and gradient w.r.t. Z of one dlmi-paper-like pass (tau = 100, Gumbel noise), float32 vs bf16
    autocast, from the same Z and noise: how much the faster pass changes what the optimiser sees."""
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(BATCH, prompt_length, lm.prompt_vocab_size, generator=generator)
    gumbel = -torch.log(-torch.log(torch.rand(z.shape, generator=generator)))

    def loss_and_grad(dtype: str) -> tuple[float, torch.Tensor]:
        leaf = z.clone().requires_grad_(True)
        probs = torch.softmax((leaf + gumbel) / 100.0, dim=-1)
        with lm.compute(dtype):
            logits = lm.teacher_forced_logits(lm.embed_probs(probs), target)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.repeat(BATCH))
        loss.backward()
        return loss.item(), leaf.grad.flatten().double()  # float64: a float32 dot over 4M-40M entries drifts past 1

    loss32, grad32 = loss_and_grad("float32")
    loss16, grad16 = loss_and_grad("bfloat16")
    return {"loss_float32": loss32, "loss_bfloat16": loss16,
            "grad_cosine": F.cosine_similarity(grad32, grad16, dim=0).item(),
            "grad_relative_error": ((grad16 - grad32).norm() / grad32.norm()).item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lengths", type=int, nargs="+", default=[10, 80], help="prompt lengths")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    lm = as_softlm(None)
    target = torch.tensor(lm.encode(TARGET_TEXT)[:20])
    bf16 = dataclasses.replace(dlmi_paper(), compute_dtype="bfloat16")
    configs = {"softtoken fp32": dlmi_paper(), "softtoken bf16": bf16,
               "softtoken bf16+compile": dataclasses.replace(bf16, compile_model=True)}
    variants = {"straightforward": lambda length: straightforward_seconds(lm, length, target, args.steps)}
    variants |= {name: functools.partial(softtoken_seconds, lm, config, target=target, steps=args.steps)
                 for name, config in configs.items()}
    rows = []
    print("| prompt | " + " | ".join(f"{name} s/step" for name in variants) + " |")
    print("|---" * (len(variants) + 1) + "|")
    for length in args.lengths:
        start = time.perf_counter()
        softtoken_seconds(lm, configs["softtoken bf16+compile"], length, target=target, steps=1)
        compile_s = time.perf_counter() - start  # torch.compile for this shape (inductor's disk cache may hold it)
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, measure in variants.items():
                times[name].append(measure(length))
        median = {name: statistics.median(values) for name, values in times.items()}
        base = median["straightforward"]
        fidelity = bf16_fidelity(lm, length, target)
        rows.append({"prompt_length": length, "target_length": 20, "batch": BATCH, "seconds_per_step": median,
                     "all_seconds_per_step": times, "speedup": {name: base / value for name, value in median.items()},
                     "first_compiled_run_s": compile_s, "bf16": fidelity})
        print(f"| {length} | " + " | ".join(f"{value:.2f} ({base / value:.2f}x)" for value in median.values()) + " |",
              flush=True)
        print(f"  first compiled run (compile + 4 steps) {compile_s:.1f} s; bf16 vs float32 at L={length}: "
              + ", ".join(f"{k} {v:.4f}" for k, v in fidelity.items()), flush=True)
    info = {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": platform.processor() or platform.machine()}
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "info": info}, indent=2))


if __name__ == "__main__":
    main()
