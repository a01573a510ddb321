"""The latent commands as plain functions, shared by `softtoken latent ...` and latent sweeps.

`prepare_sft` / `prepare_grpo` read and check every input and claim the run directory (config.json)
before anything trains; `PreparedRun.train` then trains to the end, resuming from the directory's
checkpoints. Keeping the two apart lets the command line turn every input error into one `error:` line
while a bug in training still shows its traceback. `run_sft` / `run_grpo` do both and add evaluations
with per-difficulty breakdowns (`evaluation_record`), for callers without a command line.

Heavy modules (torch, transformers) are imported inside the functions, so importing this module (as the
command line does for its defaults) stays cheap.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from softtoken.latent import options as opts
from softtoken.metrics.tracking import Tracker

DEFAULT_VAL = {"sft": "gsm8k-aug-val", "grpo": "gsm8k-aug-val/latent_thinking", "eval": "gsm8k-aug-val/latent_thinking"}
SPLITS = ("train", "validation", "test")  # make-data's files; split i is drawn from seed + i


# ----------------------------------------------------------------------------- synthetic data
def task_splits(task: str, sizes: Mapping[str, int], options: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """{split: checked task config} for the splits of SPLITS, seeded seed, seed+1, seed+2 (disjoint draws)."""
    from softtoken.latent.tasks import task_config

    return {split: task_config(task, {**options, "num_examples": sizes[split], "seed": seed + i})
            for i, split in enumerate(SPLITS)}


def write_task_data(out: Path, task: str, splits: Mapping[str, Any]) -> None:
    """Write `task_splits` output as <out>/<split>.jsonl."""
    from softtoken.latent.data import write_jsonl
    from softtoken.latent.tasks import get_task

    generate = get_task(task).generate
    for split, config in splits.items():
        write_jsonl(generate(config), out / f"{split}.jsonl")


# ----------------------------------------------------------------------------- training runs
def nonempty(option: str, text: str) -> str:
    """A required option string must set something: alone, the defaults start a full-length run."""
    if not [token for token in text.split("/") if token]:
        raise ValueError(f"{option} is empty; give the run's options, e.g. {option} latent_flat_6/steps_1000")
    return text


def eval_rows(data: str | None, eval_config: opts.EvalConfig) -> list[dict]:
    from softtoken.latent.data import load_rows

    return load_rows(data, eval_config.data_name, eval_config.split, numeric_answers=True)


def _claim(out: Path, raw: dict[str, str | None], configs: dict[str, Any], model_fingerprint: str,
           train_rows: list[dict], val_rows: list[dict]) -> None:
    """config.json for a new run, or the check that a resume starts from the same options, model and data."""
    from softtoken.latent.provenance import claim_run_dir, rows_fingerprint

    provenance = {"model": model_fingerprint, "train_data": rows_fingerprint(train_rows),
                  "eval_data": rows_fingerprint(val_rows)}
    claim_run_dir(out, {**opts.resolved_record(raw, configs), "provenance": provenance})


@dataclass
class PreparedRun:
    """A run whose inputs are read and checked and whose directory is claimed; `train` runs it."""

    kind: str  # "sft" or "grpo": the key of its training config in `configs`
    net: Any  # LatentLM with its trainable parameters set
    tokenizer: Any
    configs: dict[str, Any]  # resolved: latent, lora, eval and the kind's training config
    examples: list  # SFT pairs (`build_pairs`) or GRPO prompts (`rl_prompts`)
    val_rows: list[dict]
    out: Path

    def train(self, tracker: Tracker | None = None) -> dict:
        """Train to the last step (resuming from `out`'s checkpoints); the trainer's summary. Every
        optimiser step's metrics also go to `tracker` (the caller closes it)."""
        from softtoken.latent.grpo import train_grpo
        from softtoken.latent.sft import train_sft

        trainer = {"sft": train_sft, "grpo": train_grpo}[self.kind]
        return trainer(self.net, self.tokenizer, self.examples, self.val_rows, self.configs[self.kind],
                       self.configs["eval"], self.out, tracker=tracker)

    def progress_bar(self) -> Tracker:
        """A progress bar over this run's steps, on terminals only."""
        from softtoken.experiments.progress import ProgressBarTracker

        return ProgressBarTracker(self.configs[self.kind].steps, self.kind, disable=None)


def prepare_sft(*, train: str, out: Path, model: str | None = None, latent: str = "", lora: str = "",
                val: str = DEFAULT_VAL["sft"], data: str | None = None) -> PreparedRun:
    """Everything `softtoken latent sft` checks before its first step; raises ValueError/OSError."""
    from softtoken.latent.checkpoint import load_latent_model
    from softtoken.latent.data import load_rows, prepare_sft_rows
    from softtoken.latent.lora import prepare_trainable
    from softtoken.latent.provenance import model_fingerprint
    from softtoken.latent.sft import build_pairs

    configs = {"latent": opts.resolve("latent", latent), "lora": opts.resolve("lora", lora),
               "sft": opts.resolve("sft", nonempty("--train", train)), "eval": opts.resolve("eval", val)}
    config = configs["sft"]
    train_rows, val_rows = load_rows(data, config.data_name, "train"), eval_rows(data, configs["eval"])
    net, tokenizer = load_latent_model(model, configs["latent"], config.seed)
    fingerprint = model_fingerprint(net)  # before LoRA wraps and renames the backbone
    prepare_trainable(net, configs["lora"], latent_run=config.is_latent, seed=config.seed)
    pairs = build_pairs(prepare_sft_rows(train_rows, config), tokenizer, net, config)
    raw = {"model": model, "latent": latent, "lora": lora, "train": train, "val": val, "data": data}
    _claim(out, raw, configs, fingerprint, train_rows, val_rows)
    return PreparedRun("sft", net, tokenizer, configs, pairs, val_rows, out)


def grpo_start_model(model: str | None, config: opts.GrpoConfig) -> str | None:
    if model is not None and config.init_from is not None:
        raise ValueError(f"--model {model!r} and model-{config.init_from} both name the start model")
    if config.init_from is None:
        return model
    if not Path(config.init_from).is_dir():
        raise ValueError(f"model-{config.init_from} names no local directory; pass --model <sft run>/final")
    return config.init_from


def prepare_grpo(*, train: str, out: Path, grpo: str = "", model: str | None = None, lora: str = "",
                 latent: str | None = None, val: str = DEFAULT_VAL["grpo"], data: str | None = None) -> PreparedRun:
    """Everything `softtoken latent grpo` checks before its first step; raises ValueError/OSError."""
    from softtoken.latent.checkpoint import load_latent_model
    from softtoken.latent.data import load_rows, prepare_rl_rows
    from softtoken.latent.grpo import rl_prompts
    from softtoken.latent.lora import prepare_trainable
    from softtoken.latent.provenance import model_fingerprint

    config = opts.resolve("grpo", nonempty("--train", train), grpo)
    configs = {"grpo": config, "lora": opts.resolve("lora", lora), "eval": opts.resolve("eval", val)}
    settings = opts.resolve("latent", latent) if latent is not None else None
    train_rows, val_rows = load_rows(data, config.data_name, "train"), eval_rows(data, configs["eval"])
    net, tokenizer = load_latent_model(grpo_start_model(model, config), settings, config.seed)
    configs["latent"] = net.settings  # saved or overridden: what the policy runs with is part of the run
    fingerprint = model_fingerprint(net)  # before LoRA wraps and renames the backbone
    prepare_trainable(net, configs["lora"], latent_run=True, seed=config.seed)
    prompts = rl_prompts(tokenizer, net, prepare_rl_rows(train_rows, config), config)
    raw = {"model": model, "train": train, "grpo": grpo, "lora": lora, "latent": latent, "val": val, "data": data}
    _claim(out, raw, configs, fingerprint, train_rows, val_rows)
    return PreparedRun("grpo", net, tokenizer, configs, prompts, val_rows, out)


# ----------------------------------------------------------------------------- evaluation
@dataclass
class PreparedEval:
    """A model and the rows of one evaluation, loaded and checked; `run` decodes."""

    net: Any
    tokenizer: Any
    rows: list[dict]
    config: opts.EvalConfig

    def run(self):
        from softtoken.latent.evaluate import evaluate

        return evaluate(self.net, self.tokenizer, self.rows, self.config)


def prepare_eval(*, model: str | None, val: str = DEFAULT_VAL["eval"], latent: str | None = None,
                 data: str | None = None) -> PreparedEval:
    """Everything `softtoken latent eval` checks before decoding; raises ValueError/OSError."""
    from softtoken.latent.checkpoint import load_latent_model

    config = opts.resolve("eval", val)
    settings = opts.resolve("latent", latent) if latent is not None else None
    rows = eval_rows(data, config)
    net, tokenizer = load_latent_model(model, settings)
    return PreparedEval(net, tokenizer, rows, config)


def by_difficulty(result: Any, rows: list[dict], latent: bool) -> dict[str, dict[str, float]]:
    """{S: n, accuracy, mean reasoning length and (latent evaluations) mean latent steps} per number of
    steps S = len(row["steps"]) of the evaluated rows; keys are strings, as JSON keeps them."""
    groups: dict[int, list[int]] = defaultdict(list)
    for i, row in enumerate(rows[: result.n]):  # evaluate scores the first n rows (max_examples)
        groups[len(row["steps"])].append(i)
    table = {}
    for steps, index in sorted(groups.items()):
        entry = {"n": len(index), "accuracy": statistics.fmean(float(result.correct[i]) for i in index),
                 "length": statistics.fmean(result.lengths[i] for i in index)}
        if latent:
            entry["latent_steps"] = statistics.fmean(result.latent_steps[i] for i in index)
        table[str(steps)] = entry
    return table


def evaluation_record(result: Any, rows: list[dict], config: opts.EvalConfig, options: str) -> dict[str, Any]:
    """One evaluation as plain JSON: the summary of `result` plus `by_difficulty`."""
    by_steps = by_difficulty(result, rows, config.latent_thinking)
    return {"options": options, "latent_thinking": config.latent_thinking, "n": result.n,
            "accuracy": result.accuracy, "latent_steps": result.latent_steps_mean, "length": result.length_mean,
            "length_std": result.length_std, "length_max": result.length_max, "bad_format": result.bad_format,
            "truncated": result.truncated, "by_steps": by_steps}


def evaluations(net: Any, tokenizer: Any, data: str | None, named: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """{name: evaluation_record} of the in-memory model for each named eval option string."""
    from softtoken.latent.evaluate import evaluate

    records = {}
    for name, options in named.items():
        config = opts.resolve("eval", options)
        rows = eval_rows(data, config)
        records[name] = evaluation_record(evaluate(net, tokenizer, rows, config), rows, config, options)
    return records


def run_sft(*, train: str, out: Path, evals: Mapping[str, str], model: str | None = None, latent: str = "",
            lora: str = "", val: str = DEFAULT_VAL["sft"], data: str | None = None) -> dict[str, Any]:
    """Train (or resume) an SFT run, then evaluate the final model on `val` (as "val") and on `evals`."""
    run = prepare_sft(train=train, out=out, model=model, latent=latent, lora=lora, val=val, data=data)
    summary = run.train()
    # train_sft's own final evaluation returns the summary only, not the per-row results, so "val" is decoded again.
    return {"train": summary, "evaluations": evaluations(run.net, run.tokenizer, data, {"val": val, **evals})}


def run_grpo(*, train: str, out: Path, evals: Mapping[str, str], grpo: str = "", model: str | None = None,
             lora: str = "", latent: str | None = None, val: str = DEFAULT_VAL["grpo"],
             data: str | None = None) -> dict[str, Any]:
    """As `run_sft`, plus the same evaluations of the start model (as loaded for RL) under "start"."""
    run = prepare_grpo(train=train, out=out, grpo=grpo, model=model, lora=lora, latent=latent, val=val, data=data)
    named = {"val": val, **evals}
    start = evaluations(run.net, run.tokenizer, data, named)  # LoRA starts at zero: this is the start model
    summary = run.train()
    return {"train": summary, "evaluations": evaluations(run.net, run.tokenizer, data, named), "start": start}


__all__ = ["DEFAULT_VAL", "PreparedEval", "PreparedRun", "by_difficulty", "evaluation_record", "evaluations",
           "prepare_eval", "prepare_grpo", "prepare_sft", "run_grpo", "run_sft", "task_splits", "write_task_data"]
