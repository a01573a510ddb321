"""bf16 autocast (`autocast_bf16`): forwards run in bfloat16, losses stay float32, answers and losses
match the float32 defaults."""

import json
import math
import statistics

import pytest
import torch

from softtoken.latent import options as opts
from softtoken.latent.batching import collate
from softtoken.latent.data import SyntheticConfig, generate_synthetic, prepare_sft_rows
from softtoken.latent.evaluate import evaluate
from softtoken.latent.grpo import rl_prompts, train_grpo
from softtoken.latent.lora import prepare_trainable
from softtoken.latent.precision import bf16_autocast
from softtoken.latent.sft import build_pairs, sft_loss, train_sft
from softtoken.latent.tiny import tiny_latent_model

NO_LORA = opts.resolve("lora", "")
EVAL = "gsm8k-aug-val/latent_thinking/max_new_tokens_12"
TRAIN = "latent_flat_1/batch_size_16/lr_3e-3/val_period_1000/save_checkpoint_period_1000"


def _constant_answer_rows():
    rows = generate_synthetic(SyntheticConfig(num_examples=400, max_steps=2, max_operand=5, seed=21))
    mode = statistics.mode(r["answer"] for r in rows)
    return [r for r in rows if r["answer"] == mode]


def _trainable(tokenizer):
    return prepare_trainable(tiny_latent_model(tokenizer), NO_LORA, latent_run=True)


def _head_dtypes(model):
    """Record the dtype of every lm_head output: bf16 there means the pass ran under autocast."""
    seen = []
    model.causal.lm_head.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    return seen


def _sft(tokenizer, rows, train, out):
    config = opts.resolve("sft", train)
    model = _trainable(tokenizer)
    seen = _head_dtypes(model)
    pairs = build_pairs(prepare_sft_rows(rows, config), tokenizer, model, config)
    train_sft(model, tokenizer, pairs, rows[:2], config, opts.resolve("eval", EVAL), out)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return model.eval(), records, seen


@pytest.fixture(scope="module")
def trained(tokenizer, tmp_path_factory):
    """30 float32 steps on a one-answer task: enough for every greedy answer to be right."""
    rows = _constant_answer_rows()
    model, _, _ = _sft(tokenizer, rows, TRAIN + "/steps_30", tmp_path_factory.mktemp("trained"))
    return model, rows


def test_disabled_is_a_no_op_and_enabled_runs_the_model_in_bf16(latent_model, token_ids):
    ids = torch.tensor([[5, 6, token_ids.start, token_ids.cont, token_ids.stop, 7]])
    mask = torch.ones_like(ids)
    with bf16_autocast(latent_model, False):
        assert latent_model(ids, mask).logits.dtype == torch.float32
    with bf16_autocast(latent_model, True):
        assert latent_model(ids, mask).logits.dtype == torch.bfloat16
    # Disabled means "add nothing", not "switch off": an autocast the caller opened stays on.
    with torch.autocast("cpu", dtype=torch.bfloat16), bf16_autocast(latent_model, False):
        assert latent_model(ids, mask).logits.dtype == torch.bfloat16


def test_evaluation_under_autocast_gives_the_float32_answers(trained, tokenizer):
    model, rows = trained
    seen = _head_dtypes(model)
    plain = evaluate(model, tokenizer, rows[:16], opts.resolve("eval", EVAL))
    assert set(seen) == {torch.float32}
    seen.clear()
    bf16 = evaluate(model, tokenizer, rows[:16], opts.resolve("eval", EVAL + "/autocast_bf16"))
    assert set(seen) == {torch.bfloat16}
    assert plain.accuracy > 0.9 and bf16.bad_format == 0
    assert bf16.correct == plain.correct and bf16.lengths == plain.lengths


def test_sft_loss_is_float32_under_autocast(tokenizer, rows):
    config = opts.resolve("sft", "latent_flat_2/codi_loss_1/mean_reasoning_loss_1/autocast_bf16")
    model = _trainable(tokenizer)
    pairs = build_pairs(prepare_sft_rows(rows[:4], config), tokenizer, model, config)
    teacher = collate([p.teacher for p in pairs], model.ids.pad)
    student = collate([p.student for p in pairs], model.ids.pad)
    loss, metrics = sft_loss(model, teacher, student, config)
    assert loss.dtype == torch.float32 and math.isfinite(float(loss.detach()))
    assert {"loss/codi", "loss/mean_reasoning"} <= set(metrics)


def test_sft_run_under_autocast_has_the_float32_loss_at_step_1(tokenizer, tmp_path):
    rows = _constant_answer_rows()
    _, plain, plain_seen = _sft(tokenizer, rows, TRAIN + "/steps_2", tmp_path / "fp32")
    _, bf16, bf16_seen = _sft(tokenizer, rows, TRAIN + "/steps_2/autocast_bf16", tmp_path / "bf16")
    assert set(plain_seen) == {torch.float32} and torch.bfloat16 in bf16_seen
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in bf16)
    assert bf16[0]["loss"] == pytest.approx(plain[0]["loss"], rel=5e-2)


def test_grpo_step_under_autocast_runs_rollouts_and_losses_in_bf16(tokenizer, rows, tmp_path):
    config = opts.resolve("grpo", "num_gen_2/batch_size_4/steps_1/max_completion_length_6/eval_steps_1000/"
                                  "save_steps_1000/autocast_bf16")
    policy = _trainable(tokenizer)
    seen = []  # (dtype, grad on): the policy's loss forward is the only pass with grad
    policy.causal.lm_head.register_forward_hook(lambda _m, _i, out: seen.append((out.dtype, torch.is_grad_enabled())))
    eval_config = opts.resolve("eval", "gsm8k-aug-val/latent_thinking/max_new_tokens_4/max_examples_1")
    train_grpo(policy, tokenizer, rl_prompts(tokenizer, policy, rows, config), rows[:1], config, eval_config,
               tmp_path)
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert math.isfinite(record["loss"]) and math.isfinite(record["grad_norm"])
    # The step (rollouts, reference and policy log-probs) runs in bf16, then the float32 final evaluation.
    step = seen[: seen.index((torch.float32, False))]
    assert {dtype for dtype, _ in step} == {torch.bfloat16} and {grad for _, grad in step} == {True, False}
