"""SFT: CoT / No-CoT teacher CE, or CODI-style latent self-distillation (teacher CE + student CE +
w_codi * CODI + w_mean * mean-reasoning + w_step_codi * step CODI + w_step * step-result), in the guarded loop.

Per micro-batch the same network runs the teacher (CoT text) and the student (latent text); the
teacher is trained by its CE and only its hidden states are detached as the KD target.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from softtoken.latent.batching import Batch, Example, collate, student_example, teacher_example
from softtoken.latent.checkpoint import export_model
from softtoken.latent.data import STEP_JOIN
from softtoken.latent.evaluate import evaluate
from softtoken.latent.loop import GuardedLoop, LoopConfig
from softtoken.latent.lora import make_optimizer
from softtoken.latent.losses import at_pairs, at_positions, distill, masked_mean, select_blocks, shifted_ce, step_result_ce
from softtoken.latent.model import LatentLM, LatentOutput
from softtoken.latent.options import EvalConfig, SftConfig
from softtoken.latent.precision import bf16_autocast
from softtoken.metrics.tracking import Tracker

logger = logging.getLogger(__name__)


@dataclass
class Pair:
    teacher: Example
    student: Example | None


def build_pairs(rows: list[dict], tokenizer: Any, model: LatentLM, config: SftConfig) -> list[Pair]:
    """Encode rows (already through `prepare_sft_rows`); rows longer than max_training_tokens are dropped."""
    shift, join = config.shift_target_token_one, STEP_JOIN[config.data_name]
    pairs = []
    for row in rows:
        teacher = teacher_example(tokenizer, model.ids, row, join, shift, locate_steps=config.step_codi_weight > 0)
        student = student_example(tokenizer, model.ids, row, shift, config.mask_latent_reasoning_labels) \
            if config.is_latent else None
        longest = max(len(teacher.ids), len(student.ids) if student else 0)
        if longest <= config.max_training_tokens:
            pairs.append(Pair(teacher, student))
    if len(pairs) < len(rows):
        logger.warning("dropped %d rows longer than %d tokens", len(rows) - len(pairs), config.max_training_tokens)
    if not pairs:
        raise ValueError("no training rows left after encoding; check the data and max_training_tokens")
    return pairs


def batch_indices(n: int, batch: int, seed: int, step: int) -> list[int]:
    """Rows of optimiser step `step`: consecutive slices of per-epoch seeded permutations (resumable)."""
    out, perms = [], {}
    for i in range(step * batch, (step + 1) * batch):
        epoch, offset = divmod(i, n)
        if epoch not in perms:
            perms[epoch] = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100003 + epoch)).tolist()
        out.append(perms[epoch][offset])
    return out


def enable_checkpointing(causal: Any) -> None:
    """Non-reentrant activation checkpointing on an HF model, under the name its transformers version uses."""
    from importlib.metadata import version

    from packaging.version import Version

    # transformers 5 renamed gradient to activation checkpointing (the old name warns until v6); 5.24 is the
    # oldest release checked to have the new name.
    if Version(version("transformers")) >= Version("5.24"):
        causal.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        causal.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def _forward(model: LatentLM, batch: Batch, kd: bool, config: SftConfig) -> LatentOutput:
    """The model pass, under bf16 autocast if configured; the losses below take `.float()` of its outputs."""
    with bf16_autocast(model, config.autocast_bf16):
        return model(batch.ids, batch.mask, output_hidden_states=kd)


def _blocks(out: LatentOutput, config: SftConfig) -> list[torch.Tensor]:
    return [block.float() for block in select_blocks(out.layers, config.block_range)]


def sft_loss(model: LatentLM, teacher: Batch, student: Batch | None, config: SftConfig) -> tuple[torch.Tensor, dict]:
    """L = L_teacher + L_student + w_codi * L_codi + w_mean * L_mean (section 2.1 of the spec), plus our
    w_step_codi * L_step_codi + w_step * L_step."""
    kd = student is not None and (config.codi_weight > 0 or config.mean_reasoning_weight > 0
                                  or config.step_codi_weight > 0)
    t_out = _forward(model, teacher, kd, config)
    loss = teacher_ce = shifted_ce(t_out.logits.float(), teacher.labels)
    metrics = {"loss/teacher_ce": float(teacher_ce.detach())}
    if student is None:
        return loss, metrics
    s_out = _forward(model, student, kd, config)
    student_ce = shifted_ce(s_out.logits.float(), student.labels)
    loss = loss + student_ce
    metrics["loss/student_ce"] = float(student_ce.detach())
    if kd:  # once: every distillation term reads the same float32 block stacks
        t_blocks, s_blocks = _blocks(t_out, config), _blocks(s_out, config)
    if config.codi_weight > 0:
        codi = distill(at_positions(s_blocks, student.target), at_positions(t_blocks, teacher.target),
                       config.loss_calc, config.loss_norm)
        loss = loss + config.codi_weight * codi
        metrics["loss/codi"] = float(codi.detach())
    if config.mean_reasoning_weight > 0:
        has = teacher.reasoning.any(-1)[:, None, None]  # rows without CoT tokens are zeroed on both sides
        mean = distill(masked_mean(s_blocks, student.reasoning) * has, masked_mean(t_blocks, teacher.reasoning) * has,
                       config.loss_calc, config.loss_norm)
        loss = loss + config.mean_reasoning_weight * mean
        metrics["loss/mean_reasoning"] = float(mean.detach())
    if config.step_codi_weight > 0:
        width = min(teacher.step_positions.shape[1], student.step_positions.shape[1])
        t_pos, s_pos = teacher.step_positions[:, :width], student.step_positions[:, :width]
        paired = (t_pos >= 0) & (s_pos >= 0)  # step i of a row: thought i exists and the teacher's token was found
        if bool(paired.any()):
            step_kd = distill(at_pairs(s_blocks, s_pos, paired), at_pairs(t_blocks, t_pos, paired),
                              config.loss_calc, config.loss_norm)
            loss = loss + config.step_codi_weight * step_kd
            metrics["loss/step_codi"] = float(step_kd.detach())
    if config.step_result_weight > 0:
        steps = step_result_ce(s_out.hidden, model.causal.lm_head, student.step_positions, student.step_tokens)
        loss = loss + config.step_result_weight * steps
        metrics["loss/step_result"] = float(steps.detach())
    return loss, metrics


def train_sft(model: LatentLM, tokenizer: Any, pairs: list[Pair], val_rows: list[dict], config: SftConfig,
              eval_config: EvalConfig, run_dir: Path, tracker: Tracker | None = None) -> dict:
    """Train in place, resuming from run_dir if it holds checkpoints; returns the final summary.
    `pairs` come from `build_pairs`, so data errors surface before anything is written. `tracker`, if
    given, gets every step's metrics as well as metrics.jsonl (the caller closes it)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if config.gc_if_necessary and not config.is_latent:
        # Latent passes carry a KV cache between backbone calls, which checkpointing turns off; CoT passes do not.
        enable_checkpointing(model.causal)
    optimizer = make_optimizer(model, config.lr, config.weight_decay, config.no_decay_some_params)
    loop = GuardedLoop(run_dir, model, optimizer, LoopConfig(
        steps=config.steps, lr=config.lr, warmup_steps=config.warmup_steps, lr_schedule=config.lr_schedule,
        max_grad_norm=config.max_grad_norm, spike_factor=config.spike_factor, max_rollbacks=config.max_rollbacks,
        save_every=config.save_checkpoint_period, seed=config.seed), tracker)
    loop.start()
    best_file = run_dir / "best_val" / "val.json"  # survives resume, so best_val is never overwritten by a worse model
    best = json.loads(best_file.read_text()) if best_file.is_file() else {"accuracy": -1.0}

    def step_fn(step: int) -> tuple[float, dict]:
        model.train()
        chosen = [pairs[i] for i in batch_indices(len(pairs), config.batch_size, config.seed, step)]
        total, metrics = 0.0, {}
        for start in range(0, len(chosen), config.micro_batch):
            part = chosen[start : start + config.micro_batch]
            share = len(part) / len(chosen)  # micro-batch losses are means; weight them into the batch mean
            teacher = collate([p.teacher for p in part], model.ids.pad)
            student = collate([p.student for p in part], model.ids.pad) if config.is_latent else None
            loss, parts = sft_loss(model, teacher, student, config)
            (loss * share).backward()
            total += float(loss.detach()) * share
            metrics = {key: metrics.get(key, 0.0) + value * share for key, value in parts.items()}
        return total, metrics

    def after_step(step: int) -> dict:
        if step % config.val_period:
            return {}
        result = evaluate(model, tokenizer, val_rows, eval_config)
        if result.accuracy > best["accuracy"]:
            best.update(accuracy=result.accuracy, step=step)
            export_model(run_dir / "best_val", model, tokenizer)
            best_file.write_text(json.dumps(best))
        logger.info("step %d: val accuracy %.3f, mean length %.2f", step, result.accuracy, result.length_mean)
        return result.summary()

    loop.run(step_fn, after_step)
    export_model(run_dir / "final", model, tokenizer)
    final = evaluate(model, tokenizer, val_rows, eval_config)
    summary = {"steps": loop.state.step, "rollbacks": loop.state.rollbacks, **final.summary()}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
