"""The guarded loop reports every optimiser step to an injected tracker, besides metrics.jsonl."""

import json

import torch

from softtoken.latent import options as opts
from softtoken.latent.data import prepare_sft_rows
from softtoken.latent.grpo import rl_prompts, train_grpo
from softtoken.latent.loop import GuardedLoop, LoopConfig, tracker_metrics
from softtoken.latent.lora import prepare_trainable
from softtoken.latent.sft import build_pairs, train_sft
from softtoken.latent.tiny import tiny_latent_model

EVAL = opts.resolve("eval", "gsm8k-aug-val/latent_thinking/max_new_tokens_6/max_examples_2")


class RecordingTracker:
    def __init__(self):
        self.calls, self.closed = [], False

    def log(self, step, metrics):
        self.calls.append((step, dict(metrics)))

    def close(self):
        self.closed = True


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _linear_loop(run_dir, tracker):
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    loop = GuardedLoop(run_dir, model, optimizer, LoopConfig(steps=6, lr=0.1, save_every=2), tracker)

    def step_fn(step):
        loss = (model(torch.tensor([[float(step), 1.0, -1.0]])) - 1.0).pow(2).mean()
        if step == 3 and loop.state.rollbacks == 0:
            loss = loss * float("nan")
        loss.backward()
        return float(loss.detach()), {"loss/part": 2.0}

    return loop, step_fn


def test_tracker_gets_one_call_per_optimiser_step_with_the_logged_loss(tmp_path):
    tracker = RecordingTracker()
    loop, step_fn = _linear_loop(tmp_path, tracker)
    loop.start()
    loop.run(step_fn, after_step=lambda step: {"eval/accuracy": 0.5} if step == 5 else {})
    steps = [r for r in _records(tmp_path) if "loss" in r]  # the rollback record is not a step
    # Step index 3 (record 4) diverges: the loop rolls back to the step-2 checkpoint, replays record 3, skips 4.
    assert [step for step, _ in tracker.calls] == [r["step"] for r in steps] == [1, 2, 3, 3, 5, 6]
    for (_, metrics), record in zip(tracker.calls, steps, strict=True):
        assert metrics["loss/total"] == record["loss"] and metrics["optim/lr"] == record["lr"]
        assert metrics["optim/grad_norm"] == record["grad_norm"] and metrics["loss/part"] == 2.0
    assert tracker.calls[4][1]["eval/accuracy"] == 0.5 and "eval/accuracy" not in tracker.calls[3][1]
    assert not tracker.closed  # the caller owns it


def test_tracker_metrics_are_slash_keyed():
    record = {"step": 3, "loss": 1.5, "lr": 1e-3, "grad_norm": 0.2, "rl/accuracy": 0.5, "tokens": 7.0}
    assert tracker_metrics(record) == {"loss/total": 1.5, "optim/lr": 1e-3, "optim/grad_norm": 0.2,
                                       "rl/accuracy": 0.5, "train/tokens": 7.0}


def test_train_sft_passes_the_tracker_to_the_loop(tokenizer, rows, tmp_path):
    config = opts.resolve("sft", "latent_flat_1/batch_size_4/steps_3/lr_1e-3/val_period_2/save_checkpoint_period_1000")
    model = prepare_trainable(tiny_latent_model(tokenizer), opts.resolve("lora", ""), latent_run=True)
    pairs = build_pairs(prepare_sft_rows(rows, config), tokenizer, model, config)
    tracker = RecordingTracker()
    train_sft(model, tokenizer, pairs, rows[:2], config, EVAL, tmp_path, tracker=tracker)
    assert [step for step, _ in tracker.calls] == [1, 2, 3]
    assert [m["loss/total"] for _, m in tracker.calls] == [r["loss"] for r in _records(tmp_path)]
    assert {"loss/teacher_ce", "loss/student_ce"} <= set(tracker.calls[0][1])
    assert "eval/accuracy" in tracker.calls[1][1]  # val_period 2


def test_train_grpo_passes_the_tracker_to_the_loop(tokenizer, rows, tmp_path):
    config = opts.resolve("grpo", "num_gen_2/batch_size_4/steps_2/lr_1e-3/max_completion_length_6/eval_steps_1000/"
                                  "save_steps_1000")
    policy = prepare_trainable(tiny_latent_model(tokenizer), opts.resolve("lora", ""), latent_run=True)
    tracker = RecordingTracker()
    train_grpo(policy, tokenizer, rl_prompts(tokenizer, policy, rows, config), rows[:2], config, EVAL, tmp_path,
               tracker=tracker)
    assert [step for step, _ in tracker.calls] == [1, 2]
    assert all({"loss/total", "rl/reward_mean", "optim/lr"} <= set(m) for _, m in tracker.calls)
