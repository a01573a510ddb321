"""GRPO for latent models with our own loop (not TRL's GRPOTrainer).

Why our own loop: TRL generates through `model.generate` (HF GenerationMixin) and scores with
`model(input_ids, attention_mask, logits_to_keep)`; our latent model owns its decode loop (F(h) fed
back between steps, the hard `max_latent_steps` cap), which is not an HF generate, and the reference
needed monkey-patched tokenizers and Cache attributes to fit TRL. The algorithm itself is small:

  for each step: P prompts x G samples (temperature T) -> rewards (rewards.py) ->
  A = (r - mean_g) / (std_g + 1e-4) -> per completion token t:
  loss_t = -A * exp(logp_t - sg(logp_t)) + beta * (exp(ref_t - logp_t) - (ref_t - logp_t) - 1)
  averaged over all completion tokens of the step (token-normalised, one policy update per batch,
  so the ratio is 1 and only its gradient matters). Stop decisions and answer tokens weigh the same.

Exploration of the stop decision: after flat-k SFT the stop head is saturated (p_stop ~ 1e-4 before
step k), so temperature-1 samples all stop at k and the relative-length term has nothing to compare.
Load the start model with the latent setting `binary_head_temp_<T>` (`grpo --latent ...`): it
divides both stop-head logits in the model itself, so sampling, the log-probs and the frozen
reference all see the same tempered policy, and greedy decoding is unchanged (docs/latent.md, run 3b).
"""

from __future__ import annotations

import copy
import json
import logging
import statistics
from pathlib import Path
from typing import Any

import torch

from softtoken.latent.checkpoint import export_model
from softtoken.latent.evaluate import evaluate, score
from softtoken.latent.generation import generate
from softtoken.latent.loop import GuardedLoop, LoopConfig
from softtoken.latent.lora import make_optimizer
from softtoken.latent.model import LatentLM
from softtoken.latent.options import EvalConfig, GrpoConfig
from softtoken.latent.precision import bf16_autocast
from softtoken.latent.rewards import group_advantages, group_rewards
from softtoken.latent.tokens import prompt_ids
from softtoken.metrics.tracking import Tracker

logger = logging.getLogger(__name__)


def rl_prompts(tokenizer: Any, model: LatentLM, rows: list[dict], config: GrpoConfig) -> list[tuple[list[int], dict]]:
    """(prompt ids, row) pairs with the shared prefix + <START>; over-long prompts are dropped."""
    prompts = [(prompt_ids(tokenizer, model.ids, r["question"]) + [model.ids.start], r) for r in rows]
    kept = [p for p in prompts if len(p[0]) <= config.max_prompt_tokens]
    if not kept:
        raise ValueError(f"no prompt fits max_prompt_tokens={config.max_prompt_tokens}")
    return kept


def sequence_batch(prompts: list[list[int]], completions: list[list[int]], pad: int):
    """Left-padded prompts + right-padded completions -> ids, mask, completion mask (B, T)."""
    left, right = max(map(len, prompts)), max(map(len, completions))
    ids, mask, comp = [], [], []
    for p, c in zip(prompts, completions, strict=True):
        lpad, rpad = left - len(p), right - len(c)
        ids.append([pad] * lpad + p + c + [pad] * rpad)
        mask.append([0] * lpad + [1] * (len(p) + len(c)) + [0] * rpad)
        comp.append([0] * (lpad + len(p)) + [1] * len(c) + [0] * rpad)
    return torch.tensor(ids), torch.tensor(mask), torch.tensor(comp)


def token_logprobs(model: LatentLM, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log pi(token_t | prefix) for t >= 1: (B, T-1). Stop-head positions normalise over 2 classes."""
    logits = model(ids, mask).logits[:, :-1]  # (B, T-1, V)
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)


def grpo_loss(logp: torch.Tensor, ref_logp: torch.Tensor, advantages: torch.Tensor, comp_mask: torch.Tensor,
              beta: float, n_tokens: int) -> torch.Tensor:
    """Sum over completion tokens of the per-token GRPO loss, divided by the step's token count."""
    delta = ref_logp - logp
    per_token = -advantages[:, None] * torch.exp(logp - logp.detach()) + beta * (torch.exp(delta) - delta - 1)
    return (per_token * comp_mask).sum() / n_tokens


def train_grpo(policy: LatentLM, tokenizer: Any, prompts: list[tuple[list[int], dict]], val_rows: list[dict],
               config: GrpoConfig, eval_config: EvalConfig, run_dir: Path, tracker: Tracker | None = None) -> dict:
    """`policy` must already have its trainable parameters set; the reference is a frozen copy of it.
    `prompts` come from `rl_prompts`, so data errors surface before anything is written. `tracker`, if
    given, gets every step's metrics as well as metrics.jsonl (the caller closes it)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    reference = copy.deepcopy(policy).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    optimizer = make_optimizer(policy, config.lr, config.weight_decay, False)
    loop = GuardedLoop(run_dir, policy, optimizer, LoopConfig(
        steps=config.steps, lr=config.lr, warmup_steps=config.warmup_steps, lr_schedule=config.lr_schedule,
        max_grad_norm=config.max_grad_norm, spike_factor=config.spike_factor, max_rollbacks=config.max_rollbacks,
        save_every=config.save_steps, keep=config.save_limit, seed=config.seed), tracker)
    loop.start()
    if config.eval_on_start and loop.state.step == 0:
        loop.log({"step": 0, **evaluate(policy, tokenizer, val_rows, eval_config).summary()})

    def step_fn(step: int) -> tuple[float, dict]:
        return _grpo_step(policy, reference, tokenizer, prompts, config, step)

    def after_step(step: int) -> dict:
        return evaluate(policy, tokenizer, val_rows, eval_config).summary() if step % config.eval_steps == 0 else {}

    loop.run(step_fn, after_step)
    export_model(run_dir / "final", policy, tokenizer)
    final = evaluate(policy, tokenizer, val_rows, eval_config)
    summary = {"steps": loop.state.step, "rollbacks": loop.state.rollbacks, **final.summary()}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _grpo_step(policy: LatentLM, reference: LatentLM, tokenizer: Any, prompts: list, config: GrpoConfig,
               step: int) -> tuple[float, dict]:
    generator = torch.Generator().manual_seed(config.seed * 100003 + step)
    picks = torch.randint(len(prompts), (config.prompts_per_step,), generator=generator).tolist()
    batch = [prompts[i] for i in picks for _ in range(config.num_generations)]
    policy.eval()  # sampling without dropout; the update below runs in train mode
    with bf16_autocast(policy, config.autocast_bf16):
        out = generate(policy, [p for p, _ in batch], max_new_tokens=config.max_completion_length,
                       max_latent_steps=policy.settings.max_latent_steps, temperature=config.temperature,
                       generator=generator)
    scored = [score(p, c, r["answer"], tokenizer=tokenizer, ids=policy.ids, latent=True, require_eos=True)
              for (p, r), c in zip(batch, out.completions, strict=True)]
    rewards = torch.tensor(group_rewards(scored, config))
    advantages = group_advantages(rewards, config.num_generations, config.adv_eps)
    completions = [c if c else [policy.ids.eos] for c in out.completions]
    n_tokens = sum(map(len, completions))
    policy.train()
    total = 0.0
    for start in range(0, len(batch), config.micro_batch):
        part = slice(start, start + config.micro_batch)
        ids, mask, comp = sequence_batch([p for p, _ in batch[part]], completions[part], policy.ids.pad)
        # token_logprobs takes float32 log-probs of the (possibly bf16) logits; the loss is outside autocast.
        with torch.no_grad(), bf16_autocast(reference, config.autocast_bf16):
            ref_logp = token_logprobs(reference, ids, mask)
        with bf16_autocast(policy, config.autocast_bf16):
            logp = token_logprobs(policy, ids, mask)
        loss = grpo_loss(logp, ref_logp, advantages[part], comp[:, 1:], config.beta, n_tokens)
        loss.backward()
        total += float(loss.detach())
    return total, {
        "rl/reward_mean": float(rewards.mean()), "rl/accuracy": statistics.fmean(s.correct for s in scored),
        "rl/format": statistics.fmean(s.format_ok for s in scored),
        "rl/latent_steps_mean": statistics.fmean(s.latent_steps for s in scored),
    }
