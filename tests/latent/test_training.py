"""Oracles 6 and 10: flat-k SFT stops at k; by-1 SFT tracks difficulty; GRPO shortens thinking.

Sizes are cut to run in seconds on a 2-core CPU. The RL oracle trains on problems whose answers are
all equal, so every group is all-correct whatever the latent count: exactly the situation in which
the paper's penalty should shorten reasoning without costing accuracy.
"""

import copy
import dataclasses
import statistics

import pytest
import torch

from softtoken.latent import options as opts
from softtoken.latent.data import SyntheticConfig, generate_synthetic, prepare_sft_rows
from softtoken.latent.evaluate import evaluate
from softtoken.latent.generation import generate
from softtoken.latent.grpo import rl_prompts, train_grpo
from softtoken.latent.lora import prepare_trainable
from softtoken.latent.sft import build_pairs, train_sft
from softtoken.latent.tiny import tiny_latent_model
from softtoken.latent.tokens import prompt_ids

EVAL = opts.resolve("eval", "gsm8k-aug-val/latent_thinking/max_new_tokens_12/batch_size_64")
NO_LORA = opts.resolve("lora", "")


def _rows(n, seed, max_steps=2):
    return generate_synthetic(SyntheticConfig(num_examples=n, max_steps=max_steps, max_operand=5, seed=seed))


def _constant_answer(rows):
    mode = statistics.mode(r["answer"] for r in rows)
    return [r for r in rows if r["answer"] == mode]


def _sft(tokenizer, rows, train, out):
    config = opts.resolve("sft", train)
    model = prepare_trainable(tiny_latent_model(tokenizer, hidden=32), NO_LORA, latent_run=True)
    pairs = build_pairs(prepare_sft_rows(rows, config), tokenizer, model, config)
    train_sft(model, tokenizer, pairs, rows[:4], config, EVAL, out)
    return model.eval()


@pytest.fixture(scope="module")
def flat_model(tokenizer, tmp_path_factory):
    rows = _constant_answer(_rows(1500, seed=21))
    train = ("latent_flat_2/remove_last_reasoning_step/batch_size_16/steps_60/lr_3e-3/val_period_1000/"
             "save_checkpoint_period_1000")
    return _sft(tokenizer, rows, train, tmp_path_factory.mktemp("flat")), rows


def test_flat_k_sft_stops_at_exactly_k(flat_model, tokenizer):
    model, _ = flat_model
    result = evaluate(model, tokenizer, _rows(100, seed=22), EVAL)
    exact = sum(length == 2 + 2 for length in result.lengths) / result.n  # k + START + STOP
    assert exact > 0.95


def test_by_1_sft_latent_count_tracks_step_count(tokenizer, tmp_path):
    rows = _rows(800, seed=23)
    train = ("latent_plus_1_by_1_max_3/remove_last_reasoning_step/batch_size_16/steps_120/lr_3e-3/"
             "val_period_1000/save_checkpoint_period_1000")
    model = _sft(tokenizer, rows, train, tmp_path)
    val = _rows(100, seed=24)
    result = evaluate(model, tokenizer, val, EVAL)
    predicted = [length - 2 for length in result.lengths]
    target = [len(r["steps"]) + 1 for r in val]
    exact = sum(p == t for p, t in zip(predicted, target, strict=True)) / len(val)
    assert exact > 0.8 and statistics.correlation(predicted, target) > 0.8


def test_grpo_lowers_latent_count_and_keeps_accuracy(flat_model, tokenizer, tmp_path):
    sft_model, rows = flat_model
    policy = copy.deepcopy(sft_model)
    for p in policy.parameters():
        p.requires_grad_(True)
    val = rows[-60:]
    before = evaluate(policy, tokenizer, val, EVAL)
    config = opts.resolve("grpo", "num_gen_8/batch_size_32/steps_16/lr_3e-3/beta_1e-3/rel_len_penalty_1e-1/"
                                  "rel_len_acc_req_ALL/max_completion_length_12/eval_steps_1000/save_steps_1000")
    train_grpo(policy, tokenizer, rl_prompts(tokenizer, policy, rows[:-60], config), val[:4], config, EVAL, tmp_path)
    after = evaluate(policy, tokenizer, val, EVAL)
    assert after.latent_steps_mean < before.latent_steps_mean
    noise = 2 * (before.accuracy * (1 - before.accuracy) / before.n) ** 0.5 + 1 / before.n
    assert after.accuracy >= before.accuracy - noise


def test_stop_head_temperature_keeps_greedy_decisions_and_opens_sampled_stops(flat_model, tokenizer):
    """`binary_head_temp_<T>` as the GRPO rollout temperature of the stop decision (docs/latent.md, run 3):
    after flat-k SFT the head is saturated, so samples at T=1 stop at k; T > 1 samples other counts,
    while greedy decoding (evaluation) is unchanged because dividing both logits keeps their order."""
    model, rows = flat_model
    ids = model.ids
    prompts = [prompt_ids(tokenizer, ids, r["question"]) + [ids.start] for r in rows[:16] for _ in range(8)]
    results = {}
    for temp in (1.0, 4.0):
        tempered = copy.deepcopy(model)
        tempered.settings = dataclasses.replace(model.settings, binary_head_temp=temp)
        greedy = generate(tempered, prompts[::8], max_new_tokens=12, max_latent_steps=16).completions
        sampled = generate(tempered, prompts, max_new_tokens=12, max_latent_steps=16, temperature=1.0,
                           generator=torch.Generator().manual_seed(0)).completions
        results[temp] = greedy, [c.count(ids.cont) for c in sampled]
    assert results[4.0][0] == results[1.0][0]
    off_k = {temp: sum(k != 2 for k in counts) for temp, (_, counts) in results.items()}
    assert off_k[4.0] > max(8, 3 * off_k[1.0])


@pytest.mark.parametrize("variant", ["", "no_cot/"])
def test_cot_sft_trains_teacher_only_and_evaluates_without_latents(tokenizer, tmp_path, variant):
    rows = _rows(40, seed=25)
    config = opts.resolve("sft", f"{variant}batch_size_4/steps_3/lr_1e-3/gc_if_necessary/val_period_1000/"
                                 "save_checkpoint_period_1000")
    model = prepare_trainable(tiny_latent_model(tokenizer, hidden=32), NO_LORA, latent_run=False)
    cot_eval = opts.resolve("eval", "gsm8k-aug-val/max_new_tokens_24/max_examples_4")
    pairs = build_pairs(prepare_sft_rows(rows, config), tokenizer, model, config)
    summary = train_sft(model, tokenizer, pairs, rows[:4], config, cot_eval, tmp_path)
    assert summary["steps"] == 3 and summary["eval/latent_steps_mean"] == 0
    assert not any(p.requires_grad for n, p in model.named_parameters() if not n.startswith("base."))
