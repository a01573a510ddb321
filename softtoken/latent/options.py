"""Option strings ("lr_8e-4/r_128/latent_flat_6/...") parsed generically into typed, frozen configs.

A string is split on "/"; each token must fully match exactly one rule of its group. Rules are either
flags (`no_cot`), parametric (`lr_<number>`, `latent_plus_<b>_by_<f>_max_<m>`) or presets that set
several fields (`standard-1a`). Values are parsed, never pre-registered: `0p1` = 0.1, `85p` = 0.85
(a trailing `p` is a percentage), `30k` = 30000, `8e-4` as written. A field set by two tokens is an
error, so a recipe string is unambiguous.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from softtoken.configcheck import check_types

_NUMBER = r"[0-9][0-9a-zA-Z.+\-]*"


def parse_number(text: str) -> float:
    """`0p1` -> 0.1, `3p5e-3` -> 0.0035, `85p` -> 0.85 (percent), `30k` -> 30000.0, `8e-4` -> 0.0008."""
    body = re.sub(r"(?<=\d)p(?=\d)", ".", text)
    scale = 1.0
    if body.endswith("p"):
        body, scale = body[:-1], 0.01
    elif body.endswith("k"):
        body, scale = body[:-1], 1000.0
    try:
        return float(body) * scale
    except ValueError:
        raise ValueError(f"cannot read {text!r} as a number (examples: 0p1, 85p, 30k, 8e-4)") from None


def parse_int(text: str) -> int:
    value = parse_number(text)
    if value != int(value):
        raise ValueError(f"expected an integer, got {text!r}")
    return int(value)


@dataclass(frozen=True)
class Rule:
    """One token family: a full-match regex and a builder from the match to field values."""

    example: str
    pattern: str
    build: Callable[[re.Match[str]], dict[str, Any]]


def flag(token: str, **fields: Any) -> Rule:
    fields = fields or {token: True}
    return Rule(token, re.escape(token), lambda _m: dict(fields))


def number(alias: str, name: str, kind: Callable[[str], Any] = parse_number) -> Rule:
    return Rule(f"{alias}_<n>", re.escape(alias) + rf"_(?P<v>{_NUMBER})", lambda m: {name: kind(m["v"])})


def parse_tokens(rules: list[Rule], option_string: str | None, group: str) -> dict[str, tuple[Any, str]]:
    """Map each field to (value, token that set it); unknown tokens and double-set fields raise."""
    resolved: dict[str, tuple[Any, str]] = {}
    for token in [t for t in (option_string or "").split("/") if t]:
        matches = [rule for rule in rules if re.fullmatch(rule.pattern, token)]
        if not matches:
            examples = [rule.example for rule in rules]
            close = difflib.get_close_matches(token, examples, n=3, cutoff=0.5)
            raise ValueError(f"unknown {group} option {token!r}; close: {close or sorted(examples)}")
        if len(matches) > 1:
            raise ValueError(f"{group} option {token!r} is ambiguous between {[m.example for m in matches]}")
        try:
            values = matches[0].build(re.fullmatch(matches[0].pattern, token))
        except ValueError as err:
            raise ValueError(f"{group} option {token!r}: {err}") from None
        for name, value in values.items():
            if name in resolved:
                raise ValueError(f"{group} option {token!r} sets {name}, already set by {resolved[name][1]!r}")
            resolved[name] = (value, token)
    return resolved


def merge_parsed(*parsed: dict[str, tuple[Any, str]]) -> dict[str, Any]:
    """Combine parsed groups that feed one config; a field set in two of them is a conflict."""
    merged: dict[str, tuple[Any, str]] = {}
    for part in parsed:
        for name, (value, token) in part.items():
            if name in merged:
                raise ValueError(f"option {token!r} sets {name}, already set by {merged[name][1]!r}")
            merged[name] = (value, token)
    return {name: value for name, (value, _token) in merged.items()}


def _check(condition: bool, name: str, value: Any, expected: str) -> None:
    if not condition:
        raise ValueError(f"{name} must be {expected}, got {value!r}")


# ----------------------------------------------------------------------------------------------
# Latent model settings


FILTER_MODES = ("MLP", "linear_ln", "none")


@dataclass(frozen=True, kw_only=True)
class LatentSettings:
    """How latent inputs are formed and how the stop head reads the hidden state."""

    filter_mode: str = "MLP"  # one of FILTER_MODES
    detach_binary_head_inputs: bool = False  # stop-head loss trains only the CONTINUE/STOP rows
    binary_head_temp: float = 1.0  # > 0; divides both stop-head logits
    max_latent_steps: int = 16  # >= 1; inference forces STOP after this many CONTINUE
    # Our addition: the filter's closing LayerNorm starts at the token embeddings' RMS instead of 1, so
    # a latent input starts as large as the embedding it replaces (not ~sqrt(hidden) times larger).
    filter_embedding_scale: bool = False

    def __post_init__(self) -> None:
        check_types(self)  # first, so a range check never meets a value of the wrong type
        _check(self.filter_mode in FILTER_MODES, "filter_mode", self.filter_mode, f"one of {FILTER_MODES}")
        _check(not self.filter_embedding_scale or self.filter_mode != "none", "filter_embedding_scale", True,
               "off for filter mode 'none' (it has no LayerNorm)")
        _check(self.binary_head_temp > 0, "binary_head_temp", self.binary_head_temp, "> 0")
        _check(self.max_latent_steps >= 1, "max_latent_steps", self.max_latent_steps, ">= 1")


LATENT_RULES = [
    Rule("recurrent_filter_<MODE>", r"recurrent_filter_(?P<v>\w+)", lambda m: {"filter_mode": m["v"]}),
    flag("detach_binary_head_inputs"),
    flag("filter_embedding_scale"),
    number("binary_head_temp", "binary_head_temp"),
    number("max_latent_steps", "max_latent_steps", parse_int),
]


# ----------------------------------------------------------------------------------------------
# LoRA

LLAMA_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True, kw_only=True)
class LoraOptions:
    """PEFT LoRA on the backbone; no target modules means full fine-tuning of the backbone."""

    target_modules: tuple[str, ...] = ()
    latent_modules_to_save: bool = False  # train the filter and the special-token rows in full
    r: int = 8  # >= 1
    alpha: float = 16.0  # > 0
    dropout: float = 0.0  # in [0, 1)

    def __post_init__(self) -> None:
        check_types(self)
        _check(self.r >= 1, "r", self.r, ">= 1")
        _check(self.alpha > 0, "alpha", self.alpha, "> 0")
        _check(0 <= self.dropout < 1, "dropout", self.dropout, "in [0, 1)")

    @property
    def enabled(self) -> bool:
        return bool(self.target_modules)


LORA_RULES = [
    flag("llama_target_modules", target_modules=LLAMA_TARGET_MODULES),
    flag("latent_modules_to_save"),
    number("r", "r", parse_int),
    number("alpha", "alpha"),
    number("dropout", "dropout"),
]


# ----------------------------------------------------------------------------------------------
# Data selection shared by SFT and GRPO

DATA_NAMES = ("gsm8k-aug", "gsm8k-aug-nl")
LOSS_CALC_MODES = ("smooth_l1", "mean_l2")
LOSS_NORM_MODES = ("none", "layerwise_std", "std")
LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True, kw_only=True)
class SftConfig:
    """One SFT run: data pipeline, latent schedule, losses, optimiser and run cadence."""

    data_name: str = "gsm8k-aug"  # steps joined with "" (equations) or " " (-nl)
    slice_proportion: float = 1.0  # in (0, 1]; keep the first fraction of the seed-42 shuffle
    remove_last_reasoning_step: bool = False
    remove_negative_answers: bool = False
    no_cot: bool = False  # teacher text has no reasoning steps
    latent_factor: int | None = None  # None = not a latent run; n = clamp(S*factor + bias, min, max)
    latent_bias: int = 0
    latent_min: int = 0  # >= 0
    latent_max: int = 0  # >= latent_min
    batch_size: int = 128  # examples per optimiser step
    micro_batch_size: int | None = None  # None = batch_size; must divide batch_size
    steps: int = 30000  # optimiser steps, >= 1
    lr: float = 1e-4  # > 0
    lr_schedule: str = "constant"  # one of LR_SCHEDULES
    warmup_steps: int = 0  # >= 0, linear warmup
    max_grad_norm: float = 1.0  # > 0
    weight_decay: float = 0.0  # >= 0
    no_decay_some_params: bool = False  # biases, norms and special-token rows get no decay
    val_period: int = 200  # steps between validations, >= 1
    save_checkpoint_period: int = 4000  # steps between checkpoints, >= 1
    codi_weight: float = 0.0  # >= 0; CODI KD at the target token
    mean_reasoning_weight: float = 0.0  # >= 0; mean-of-reasoning KD
    step_result_weight: float = 0.0  # >= 0; CE of step i's result read from the state fed into thought i (ours)
    step_codi_weight: float = 0.0  # >= 0; KD of that state to the teacher's at the token before step i's result (ours)
    loss_calc: str = "smooth_l1"  # one of LOSS_CALC_MODES
    loss_norm: str = "none"  # one of LOSS_NORM_MODES
    block_range: tuple[int, int] | None = None  # inclusive decoder-block range for KD; None = all
    mask_latent_reasoning_labels: bool = False  # no CE on START/CONTINUE/STOP in the student
    shift_target_token_one: bool = False  # KD target is the token right before the answer digits
    max_training_tokens: int = 512  # longer rows are dropped
    seed: int = 42
    spike_factor: float = 5.0  # > 1; loss above factor x running mean (after warmup) is a spike
    max_rollbacks: int = 5  # >= 0; give up after this many rollbacks
    gc_if_necessary: bool = False  # gradient checkpointing on plain (non-latent) passes
    autocast_bf16: bool = False  # training forwards under bfloat16 autocast; losses stay float32

    def __post_init__(self) -> None:
        check_types(self)
        _check(self.data_name in DATA_NAMES, "data_name", self.data_name, f"one of {DATA_NAMES}")
        _check(0 < self.slice_proportion <= 1, "slice_proportion", self.slice_proportion, "in (0, 1]")
        _check(self.latent_min >= 0, "latent_min", self.latent_min, ">= 0")
        _check(self.latent_max >= self.latent_min, "latent_max", self.latent_max, ">= latent_min")
        _check(self.batch_size >= 1, "batch_size", self.batch_size, ">= 1")
        micro = self.micro_batch_size
        _check(micro is None or (micro >= 1 and self.batch_size % micro == 0), "micro_batch_size", micro,
               "a divisor of batch_size")
        _check(self.steps >= 1, "steps", self.steps, ">= 1")
        _check(self.lr > 0, "lr", self.lr, "> 0")
        _check(self.lr_schedule in LR_SCHEDULES, "lr_schedule", self.lr_schedule, f"one of {LR_SCHEDULES}")
        _check(self.warmup_steps >= 0, "warmup_steps", self.warmup_steps, ">= 0")
        _check(self.max_grad_norm > 0, "max_grad_norm", self.max_grad_norm, "> 0")
        _check(self.weight_decay >= 0, "weight_decay", self.weight_decay, ">= 0")
        _check(self.val_period >= 1, "val_period", self.val_period, ">= 1")
        _check(self.save_checkpoint_period >= 1, "save_checkpoint_period", self.save_checkpoint_period, ">= 1")
        _check(self.codi_weight >= 0, "codi_weight", self.codi_weight, ">= 0")
        _check(self.mean_reasoning_weight >= 0, "mean_reasoning_weight", self.mean_reasoning_weight, ">= 0")
        _check(self.loss_calc in LOSS_CALC_MODES, "loss_calc", self.loss_calc, f"one of {LOSS_CALC_MODES}")
        _check(self.loss_norm in LOSS_NORM_MODES, "loss_norm", self.loss_norm, f"one of {LOSS_NORM_MODES}")
        blocks = self.block_range
        _check(blocks is None or 0 <= blocks[0] <= blocks[1], "block_range", blocks, "(first, last) with 0 <= first <= last")
        _check(self.step_result_weight >= 0, "step_result_weight", self.step_result_weight, ">= 0")
        _check(self.step_result_weight == 0 or self.is_latent, "step_result_weight", self.step_result_weight,
               "0 unless a latent schedule is set")
        _check(self.step_codi_weight >= 0, "step_codi_weight", self.step_codi_weight, ">= 0")
        kd = self.codi_weight > 0 or self.mean_reasoning_weight > 0 or self.step_codi_weight > 0
        _check(not kd or self.is_latent, "codi_weight", self.codi_weight, "0 unless a latent schedule is set")
        _check(not self.mask_latent_reasoning_labels or self.is_latent, "mask_latent_reasoning_labels", True,
               "False unless a latent schedule is set")
        _check(self.max_training_tokens >= 8, "max_training_tokens", self.max_training_tokens, ">= 8")
        _check(self.spike_factor > 1, "spike_factor", self.spike_factor, "> 1")
        _check(self.max_rollbacks >= 0, "max_rollbacks", self.max_rollbacks, ">= 0")

    @property
    def is_latent(self) -> bool:
        return self.latent_factor is not None

    @property
    def micro_batch(self) -> int:
        return self.micro_batch_size or self.batch_size


def _latent_schedule(factor: int, bias: int, low: int, high: int) -> dict[str, Any]:
    return {"latent_factor": factor, "latent_bias": bias, "latent_min": low, "latent_max": high}


_SHARED_TRAIN_RULES = [
    flag("gsm8k-aug", data_name="gsm8k-aug"),
    flag("gsm8k-aug-nl", data_name="gsm8k-aug-nl"),
    number("slice_proportion", "slice_proportion"),
    number("batch_size", "batch_size", parse_int),
    number("micro_batch_size", "micro_batch_size", parse_int),
    number("steps", "steps", parse_int),
    number("lr", "lr"),
    number("warmup", "warmup_steps", parse_int),
    number("max_grad_norm", "max_grad_norm"),
    number("weight_decay", "weight_decay"),
    number("seed", "seed", parse_int),
    flag("autocast_bf16"),
]

SFT_RULES = _SHARED_TRAIN_RULES + [
    flag("remove_last_reasoning_step"),
    flag("remove_negative_answers"),
    flag("no_cot"),
    Rule("latent_flat_<k>", r"latent_flat_(?P<k>\d+)", lambda m: _latent_schedule(0, 0, int(m["k"]), int(m["k"]))),
    Rule("latent_plus_<b>_by_<f>_max_<m>", r"latent_plus_(?P<b>\d+)_by_(?P<f>\d+)_max_(?P<m>\d+)",
         lambda m: _latent_schedule(int(m["f"]), int(m["b"]), 0, int(m["m"]))),
    Rule("cosine-warmup_<n>", rf"cosine-warmup_(?P<v>{_NUMBER})",
         lambda m: {"lr_schedule": "cosine", "warmup_steps": parse_int(m["v"])}),
    flag("no_decay_some_params"),
    number("val_period", "val_period", parse_int),
    number("save_checkpoint_period", "save_checkpoint_period", parse_int),
    number("codi_loss", "codi_weight"),
    number("mean_reasoning_loss", "mean_reasoning_weight"),
    number("step_result_loss", "step_result_weight"),
    number("step_codi_loss", "step_codi_weight"),
    Rule("calc_<mode>", r"calc_(?P<v>smooth_l1|mean_l2)", lambda m: {"loss_calc": m["v"]}),
    Rule("norm_<mode>", r"norm_(?P<v>none|layerwise_std|std)", lambda m: {"loss_norm": m["v"]}),
    Rule("intermediate_block_<model>_<first>_<last>", r"intermediate_block_(?:[a-z0-9]+_)?(?P<a>\d+)_(?P<b>\d+)",
         lambda m: {"block_range": (int(m["a"]), int(m["b"]))}),
    flag("mask_latent_reasoning_labels"),
    flag("shift_target_token_one"),
    number("max_training_tokens", "max_training_tokens", parse_int),
    number("spike_factor", "spike_factor"),
    number("max_rollbacks", "max_rollbacks", parse_int),
    flag("gc_if_necessary"),
]


# ----------------------------------------------------------------------------------------------
# Evaluation

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """Greedy evaluation: which split, latent prompting, length caps."""

    data_name: str = "gsm8k-aug"
    split: str = "validation"  # one of SPLITS
    latent_thinking: bool = False  # prompt ends with <START>; the model decides when to stop
    thought_count_override: int | None = None  # >= 0; fixed CONTINUE count, the stop head is bypassed
    max_new_tokens: int = 512  # >= 1
    batch_size: int = 64  # >= 1
    max_examples: int | None = None  # >= 1; None = the whole split
    autocast_bf16: bool = False  # greedy decoding under bfloat16 autocast

    def __post_init__(self) -> None:
        check_types(self)
        _check(self.data_name in DATA_NAMES, "data_name", self.data_name, f"one of {DATA_NAMES}")
        _check(self.split in SPLITS, "split", self.split, f"one of {SPLITS}")
        override = self.thought_count_override
        _check(override is None or override >= 0, "thought_count_override", override, ">= 0")
        _check(override is None or self.latent_thinking, "thought_count_override", override,
               "None unless latent_thinking is set")
        _check(self.max_new_tokens >= 1, "max_new_tokens", self.max_new_tokens, ">= 1")
        _check(self.batch_size >= 1, "batch_size", self.batch_size, ">= 1")
        _check(self.max_examples is None or self.max_examples >= 1, "max_examples", self.max_examples, ">= 1")


def _split_rule(name: str) -> Rule:
    split_names = {"val": "validation", "test": "test", "train": "train"}
    pattern = re.escape(name) + r"-(?P<s>val|test|train)"
    return Rule(f"{name}-<val|test|train>", pattern, lambda m: {"data_name": name, "split": split_names[m["s"]]})


EVAL_RULES = [
    _split_rule("gsm8k-aug"),
    _split_rule("gsm8k-aug-nl"),
    flag("latent_thinking"),
    number("latent_thought_count_override", "thought_count_override", parse_int),
    number("max_new_tokens", "max_new_tokens", parse_int),
    number("batch_size", "batch_size", parse_int),
    number("max_examples", "max_examples", parse_int),
    flag("autocast_bf16"),
]


# ----------------------------------------------------------------------------------------------
# GRPO (the reference's GRPOTrainingConfig and trl.GRPOConfig strings feed this one config)


@dataclass(frozen=True, kw_only=True)
class GrpoConfig:
    """Group-relative policy optimisation with the relative-length reward of the paper."""

    init_from: str | None = None  # `model-<name>`: an SFT run directory; else --model
    data_name: str = "gsm8k-aug"
    slice_proportion: float = 1.0  # in (0, 1]; keep the LAST fraction of the seed-42 shuffle
    batch_size: int = 128  # completions per optimiser step = prompts x num_generations
    micro_batch_size: int | None = None  # completions per forward; must divide batch_size
    num_generations: int = 16  # G >= 2 samples per prompt
    format_weight: float = 1.0  # >= 0; penalty for a malformed completion
    accuracy_weight: float = 1.0  # >= 0
    rel_len_penalty: float = 0.0  # >= 0; lambda_pen, used when the group meets the accuracy requirement
    rel_len_reward: float = 0.0  # >= 0; lambda_rew, used otherwise (longer correct is better)
    rel_len_acc_req: float = 1.0  # in (0, 1]; fraction of the group that must be correct
    max_prompt_tokens: int = 100  # >= 1; longer prompts are dropped
    max_completion_length: int = 40  # >= 2; a truncated completion fails the format check
    temperature: float = 1.0  # > 0
    beta: float = 0.0  # >= 0; weight of the k3 KL to the frozen reference
    adv_eps: float = 1e-4  # > 0; advantage = (r - mean) / (std_unbiased + adv_eps)
    lr: float = 1e-5  # > 0
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    steps: int = 60000  # >= 1
    eval_steps: int = 200  # >= 1
    save_steps: int = 200  # >= 1
    save_limit: int | None = 2  # None = keep every checkpoint
    eval_on_start: bool = False
    seed: int = 42
    spike_factor: float | None = None  # > 1; None: PG losses hover around 0, so only non-finite values roll back
    max_rollbacks: int = 5
    autocast_bf16: bool = False  # rollouts and loss forwards under bfloat16 autocast; losses stay float32

    def __post_init__(self) -> None:
        check_types(self)
        _check(self.data_name in DATA_NAMES, "data_name", self.data_name, f"one of {DATA_NAMES}")
        _check(0 < self.slice_proportion <= 1, "slice_proportion", self.slice_proportion, "in (0, 1]")
        _check(self.num_generations >= 2, "num_generations", self.num_generations, ">= 2")
        _check(self.batch_size % self.num_generations == 0, "batch_size", self.batch_size,
               f"a multiple of num_generations={self.num_generations}")
        micro = self.micro_batch_size
        _check(micro is None or (micro >= 1 and self.batch_size % micro == 0), "micro_batch_size", micro,
               "a divisor of batch_size")
        for name in ("format_weight", "accuracy_weight", "rel_len_penalty", "rel_len_reward", "beta", "weight_decay"):
            _check(getattr(self, name) >= 0, name, getattr(self, name), ">= 0")
        _check(0 < self.rel_len_acc_req <= 1, "rel_len_acc_req", self.rel_len_acc_req, "a fraction in (0, 1] or ALL")
        _check(self.max_prompt_tokens >= 1, "max_prompt_tokens", self.max_prompt_tokens, ">= 1")
        _check(self.max_completion_length >= 2, "max_completion_length", self.max_completion_length, ">= 2")
        _check(self.temperature > 0, "temperature", self.temperature, "> 0")
        _check(self.adv_eps > 0, "adv_eps", self.adv_eps, "> 0")
        _check(self.lr > 0, "lr", self.lr, "> 0")
        _check(self.lr_schedule in LR_SCHEDULES, "lr_schedule", self.lr_schedule, f"one of {LR_SCHEDULES}")
        _check(self.max_grad_norm > 0, "max_grad_norm", self.max_grad_norm, "> 0")
        for name in ("steps", "eval_steps", "save_steps"):
            _check(getattr(self, name) >= 1, name, getattr(self, name), ">= 1")
        _check(self.save_limit is None or self.save_limit >= 1, "save_limit", self.save_limit, ">= 1 or None")
        _check(self.spike_factor is None or self.spike_factor > 1, "spike_factor", self.spike_factor, "> 1 or None")

    @property
    def prompts_per_step(self) -> int:
        return self.batch_size // self.num_generations

    @property
    def micro_batch(self) -> int:
        return self.micro_batch_size or self.batch_size


def _fraction_or_all(text: str) -> float:
    return 1.0 if text == "ALL" else parse_number(text)


GRPO_RULES = _SHARED_TRAIN_RULES + [
    Rule("model-<name>", r"model-(?P<v>[\w.\-]+)", lambda m: {"init_from": m["v"]}),
    number("num_gen", "num_generations", parse_int),
    number("format_weight", "format_weight"),
    number("accuracy_weight", "accuracy_weight"),
    number("rel_len_penalty", "rel_len_penalty"),
    number("rel_len_reward", "rel_len_reward"),
    Rule("rel_len_acc_req_<ALL|fraction>", rf"rel_len_acc_req_(?P<v>ALL|{_NUMBER})",
         lambda m: {"rel_len_acc_req": _fraction_or_all(m["v"])}),
    number("max_prompt_tokens", "max_prompt_tokens", parse_int),
    number("max_completion_length", "max_completion_length", parse_int),
    number("temperature", "temperature"),
    number("beta", "beta"),
    number("adv_eps", "adv_eps"),
    flag("cosine_lr", lr_schedule="cosine"),
    number("eval_steps", "eval_steps", parse_int),
    number("save_steps", "save_steps", parse_int),
    flag("no_save_limit", save_limit=None),
    number("save_limit", "save_limit", parse_int),
    flag("eval_on_start"),
    # The reference's base GRPO preset: TRL defaults plus these (its bf16 is the separate `autocast_bf16`
    # token, so the preset keeps float32; logging is not config here).
    flag("standard-1a", warmup_steps=1000, max_completion_length=40, eval_on_start=True),
    number("spike_factor", "spike_factor"),
    number("max_rollbacks", "max_rollbacks", parse_int),
]


# ----------------------------------------------------------------------------------------------
# Resolution and the resolved-config dump

GROUPS: dict[str, tuple[list[Rule], type]] = {
    "latent": (LATENT_RULES, LatentSettings),
    "lora": (LORA_RULES, LoraOptions),
    "sft": (SFT_RULES, SftConfig),
    "eval": (EVAL_RULES, EvalConfig),
    "grpo": (GRPO_RULES, GrpoConfig),
}


def resolve(group: str, *option_strings: str | None) -> Any:
    """Build the group's config from one or more option strings (fields may be set only once)."""
    if group not in GROUPS:
        raise ValueError(f"unknown option group {group!r}; valid: {sorted(GROUPS)}")
    rules, config_type = GROUPS[group]
    parsed = [parse_tokens(rules, text, group) for text in option_strings]
    return config_type(**merge_parsed(*parsed))


def config_to_dict(config: Any) -> dict[str, Any]:
    return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def changed_fields(config: Any) -> dict[str, Any]:
    """The fields that differ from their defaults: what a hash covers, so a field added later with a
    default leaves every earlier run's key as it was."""
    default = type(config)()
    return {name: value for name, value in config_to_dict(config).items() if value != _plain(getattr(default, name))}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def config_from_dict(config_type: type, data: dict[str, Any]) -> Any:
    kinds = {f.name: f for f in dataclasses.fields(config_type)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in kinds}
    return config_type(**values)


def resolved_record(option_strings: dict[str, str | None], configs: dict[str, Any]) -> dict[str, Any]:
    """The JSON written next to checkpoints: inputs, resolved fields and a hash of the changed fields."""
    resolved = {name: config_to_dict(config) for name, config in configs.items()}
    changed = {name: changed_fields(config) for name, config in configs.items()}
    digest = hashlib.sha256(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:16]
    return {"options": option_strings, "resolved": resolved, "hash": digest}


__all__ = [
    "EvalConfig", "GrpoConfig", "LatentSettings", "LoraOptions", "SftConfig", "GROUPS",
    "changed_fields", "config_from_dict", "config_to_dict", "parse_number", "resolve", "resolved_record",
]
