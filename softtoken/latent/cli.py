"""`softtoken latent ...`: make-data, make-tiny-model, sft, grpo, eval."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from softtoken.exits import fail
from softtoken.latent import options as opts
from softtoken.lm.embedded import EmbeddedModelMissing

app = typer.Typer(help="Adaptive latent reasoning: SFT (CODI), GRPO with a length reward, evaluation.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
logger = logging.getLogger(__name__)

MODEL_HELP = "HF id, local dir (a base model or an exported latent model); omit for the embedded SmolLM2"
DATA_HELP = "local dir with <split>.jsonl/.json or one file; omit to use the hub (needs `datasets`)"
USER_ERRORS = (ValueError, OSError, EmbeddedModelMissing)


@contextmanager
def user_errors() -> Iterator[None]:
    """Wraps everything a command checks before its first step: a bad input becomes one `error:` line.

    Training itself runs outside, so a bug there still shows its traceback."""
    try:
        yield
    except USER_ERRORS as err:
        text = str(err).strip()
        fail(text.splitlines()[0] if text else type(err).__name__)


def _nonempty(option: str, text: str) -> str:
    """A required option string must set something: alone, the defaults start a full-length run."""
    if not [token for token in text.split("/") if token]:
        raise ValueError(f"{option} is empty; give the run's options, e.g. {option} latent_flat_6/steps_1000")
    return text


def _eval_rows(data: str | None, eval_config: opts.EvalConfig) -> list[dict]:
    from softtoken.latent.data import load_rows

    return load_rows(data, eval_config.data_name, eval_config.split, numeric_answers=True)


def _claim(out: Path, raw: dict[str, str | None], configs: dict[str, Any], model_fingerprint: str,
           train_rows: list[dict], val_rows: list[dict]) -> None:
    """config.json for a new run, or the check that a resume starts from the same options, model and data."""
    from softtoken.latent.provenance import claim_run_dir, rows_fingerprint

    provenance = {"model": model_fingerprint, "train_data": rows_fingerprint(train_rows),
                  "eval_data": rows_fingerprint(val_rows)}
    claim_run_dir(out, {**opts.resolved_record(raw, configs), "provenance": provenance})


@app.command("make-data")
def make_data(
    out: Path = typer.Option(..., help="directory for train/validation/test .jsonl"),
    train_size: int = typer.Option(20000), val_size: int = typer.Option(200), test_size: int = typer.Option(500),
    min_steps: int = typer.Option(1), max_steps: int = typer.Option(4), max_operand: int = typer.Option(20),
    seed: int = typer.Option(0, help="split seeds are seed, seed+1, seed+2 (disjoint)"),
    natural_language: bool = typer.Option(False, "--nl", help="the gsm8k-aug-nl step format"),
) -> None:
    """Write the seeded synthetic GSM8K-Aug stand-in."""
    from softtoken.latent.data import SyntheticConfig, generate_synthetic, write_jsonl

    splits = {"train": train_size, "validation": val_size, "test": test_size}
    with user_errors():
        configs = {split: SyntheticConfig(num_examples=size, min_steps=min_steps, max_steps=max_steps,
                                          max_operand=max_operand, natural_language=natural_language, seed=seed + i)
                   for i, (split, size) in enumerate(splits.items())}
    for split, config in configs.items():
        write_jsonl(generate_synthetic(config), out / f"{split}.jsonl")
    typer.echo(f"wrote {train_size}/{val_size}/{test_size} rows to {out}")


@app.command("make-tiny-model")
def make_tiny_model(out: Path = typer.Option(...), hidden: int = typer.Option(64), layers: int = typer.Option(2),
                    seed: int = typer.Option(0)) -> None:
    """Write a random tiny Llama + word tokenizer for the synthetic data (offline CPU runs)."""
    from softtoken.latent.tiny import save_tiny_model

    typer.echo(f"wrote {save_tiny_model(out, hidden=hidden, layers=layers, seed=seed)}")


@app.command("sft")
def sft(
    train: str = typer.Option(..., help="e.g. gsm8k-aug/slice_proportion_85p/latent_flat_6/codi_loss_20/..."),
    out: Path = typer.Option(..., help="run directory (resumes if it holds checkpoints)"),
    model: str | None = typer.Option(None, help=MODEL_HELP),
    latent: str = typer.Option("", help="e.g. recurrent_filter_MLP/detach_binary_head_inputs"),
    lora: str = typer.Option("", help="e.g. llama_target_modules/latent_modules_to_save/r_128/alpha_32/dropout_0p1"),
    val: str = typer.Option("gsm8k-aug-val", help="e.g. gsm8k-aug-val/latent_thinking"),
    data: str | None = typer.Option(None, help=DATA_HELP),
) -> None:
    """Supervised fine-tuning: CoT, No-CoT, or latent (CODI self-distillation)."""
    from softtoken.latent.checkpoint import load_latent_model
    from softtoken.latent.data import load_rows, prepare_sft_rows
    from softtoken.latent.lora import prepare_trainable
    from softtoken.latent.provenance import model_fingerprint
    from softtoken.latent.sft import build_pairs, train_sft

    started = time.time()
    with user_errors():  # every input is read and checked before anything is written
        configs = {"latent": opts.resolve("latent", latent), "lora": opts.resolve("lora", lora),
                   "sft": opts.resolve("sft", _nonempty("--train", train)), "eval": opts.resolve("eval", val)}
        config = configs["sft"]
        train_rows, val_rows = load_rows(data, config.data_name, "train"), _eval_rows(data, configs["eval"])
        net, tokenizer = load_latent_model(model, configs["latent"], config.seed)
        fingerprint = model_fingerprint(net)  # before LoRA wraps and renames the backbone
        prepare_trainable(net, configs["lora"], latent_run=config.is_latent, seed=config.seed)
        pairs = build_pairs(prepare_sft_rows(train_rows, config), tokenizer, net, config)
        raw = {"model": model, "latent": latent, "lora": lora, "train": train, "val": val, "data": data}
        _claim(out, raw, configs, fingerprint, train_rows, val_rows)
    summary = train_sft(net, tokenizer, pairs, val_rows, config, configs["eval"], out)
    typer.echo(json.dumps({**summary, "wall_s": round(time.time() - started, 1)}, indent=2))


def _grpo_model(model: str | None, config: opts.GrpoConfig) -> str | None:
    if model is not None and config.init_from is not None:
        raise ValueError(f"--model {model!r} and model-{config.init_from} both name the start model")
    if config.init_from is None:
        return model
    if not Path(config.init_from).is_dir():
        raise ValueError(f"model-{config.init_from} names no local directory; pass --model <sft run>/final")
    return config.init_from


@app.command("grpo")
def grpo(
    train: str = typer.Option(..., help="e.g. model-latent-6/slice_proportion_15p/batch_size_128/rel_len_penalty_1e-4/..."),
    out: Path = typer.Option(...),
    grpo_options: str = typer.Option("", "--grpo", help="e.g. standard-1a/cosine_lr/lr_1e-5/beta_1e-3/num_gen_16"),
    model: str | None = typer.Option(None, help="an exported SFT model, e.g. <sft run>/final"),
    lora: str = typer.Option("", help="e.g. llama_target_modules/latent_modules_to_save/r_32/alpha_32/dropout_0p1"),
    latent: str | None = typer.Option(None, help="override the saved latent settings (e.g. max_latent_steps_8)"),
    val: str = typer.Option("gsm8k-aug-val/latent_thinking"),
    data: str | None = typer.Option(None, help=DATA_HELP),
) -> None:
    """GRPO with the format + correctness + relative-length reward and a KL to the SFT model."""
    from softtoken.latent.checkpoint import load_latent_model
    from softtoken.latent.data import load_rows, prepare_rl_rows
    from softtoken.latent.grpo import rl_prompts, train_grpo
    from softtoken.latent.lora import prepare_trainable
    from softtoken.latent.provenance import model_fingerprint

    started = time.time()
    with user_errors():  # every input is read and checked before anything is written
        config = opts.resolve("grpo", _nonempty("--train", train), grpo_options)
        configs = {"grpo": config, "lora": opts.resolve("lora", lora), "eval": opts.resolve("eval", val)}
        settings = opts.resolve("latent", latent) if latent is not None else None
        train_rows, val_rows = load_rows(data, config.data_name, "train"), _eval_rows(data, configs["eval"])
        net, tokenizer = load_latent_model(_grpo_model(model, config), settings, config.seed)
        configs["latent"] = net.settings  # saved or overridden: what the policy runs with is part of the run
        fingerprint = model_fingerprint(net)  # before LoRA wraps and renames the backbone
        prepare_trainable(net, configs["lora"], latent_run=True, seed=config.seed)
        prompts = rl_prompts(tokenizer, net, prepare_rl_rows(train_rows, config), config)
        raw = {"model": model, "train": train, "grpo": grpo_options, "lora": lora, "latent": latent, "val": val,
               "data": data}
        _claim(out, raw, configs, fingerprint, train_rows, val_rows)
    summary = train_grpo(net, tokenizer, prompts, val_rows, config, configs["eval"], out)
    typer.echo(json.dumps({**summary, "wall_s": round(time.time() - started, 1)}, indent=2))


@app.command("eval")
def eval_command(
    model: str | None = typer.Option(None, help=MODEL_HELP),
    val: str = typer.Option("gsm8k-aug-val/latent_thinking", help="e.g. gsm8k-aug-test/latent_thinking"),
    latent: str | None = typer.Option(None, help="override the saved latent settings (e.g. max_latent_steps_8)"),
    data: str | None = typer.Option(None, help=DATA_HELP),
    out: Path | None = typer.Option(None, help="write the result (with per-row lengths) as JSON"),
) -> None:
    """Greedy accuracy and reasoning length (counted on ids; see softtoken.latent.evaluate)."""
    from dataclasses import asdict

    from softtoken.latent.checkpoint import load_latent_model
    from softtoken.latent.evaluate import evaluate

    with user_errors():
        eval_config = opts.resolve("eval", val)
        settings = opts.resolve("latent", latent) if latent is not None else None
        rows = _eval_rows(data, eval_config)
        net, tokenizer = load_latent_model(model, settings)
    started = time.time()
    result = evaluate(net, tokenizer, rows, eval_config)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(asdict(result)))
    typer.echo(json.dumps({**result.summary(), "wall_s": round(time.time() - started, 1)}, indent=2))
