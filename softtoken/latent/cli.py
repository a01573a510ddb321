"""`softtoken latent ...`: make-data, make-tiny-model, sft, grpo, eval."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import typer

from softtoken.latent import options as opts

app = typer.Typer(help="Adaptive latent reasoning: SFT (CODI), GRPO with a length reward, evaluation.",
                  no_args_is_help=True)
logger = logging.getLogger(__name__)

MODEL_HELP = "HF id, local dir (a base model or an exported latent model); omit for the embedded SmolLM2"
DATA_HELP = "local dir with <split>.jsonl/.json or one file; omit to use the hub (needs `datasets`)"


def _resolve(group: str, *option_strings: str | None) -> Any:
    """Option-string errors become usage errors (exit code 2) with the one-line message."""
    try:
        return opts.resolve(group, *option_strings)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None


def _write_config(run_dir: Path, record: dict[str, Any]) -> None:
    """Write the resolved config; a resumed run must have been started with the same one."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "config.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if old["hash"] != record["hash"]:
            raise typer.BadParameter(f"{run_dir} holds a run with other options (hash {old['hash']}); use a new --out")
    path.write_text(json.dumps(record, indent=2))


def _eval_rows(data: str | None, eval_config: opts.EvalConfig) -> list[dict]:
    from softtoken.latent.data import load_rows

    return load_rows(data, eval_config.data_name, eval_config.split)


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

    for offset, (split, size) in enumerate([("train", train_size), ("validation", val_size), ("test", test_size)]):
        config = SyntheticConfig(num_examples=size, min_steps=min_steps, max_steps=max_steps, max_operand=max_operand,
                                 natural_language=natural_language, seed=seed + offset)
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
    from softtoken.latent.sft import train_sft

    configs = {"latent": _resolve("latent", latent), "lora": _resolve("lora", lora),
               "sft": _resolve("sft", train), "eval": _resolve("eval", val)}
    raw = {"model": model, "latent": latent, "lora": lora, "train": train, "val": val, "data": data}
    _write_config(out, opts.resolved_record(raw, configs))
    started = time.time()
    net, tokenizer = load_latent_model(model, configs["latent"])
    prepare_trainable(net, configs["lora"], latent_run=configs["sft"].is_latent)
    rows = prepare_sft_rows(load_rows(data, configs["sft"].data_name, "train"), configs["sft"])
    summary = train_sft(net, tokenizer, rows, _eval_rows(data, configs["eval"]), configs["sft"], configs["eval"], out)
    typer.echo(json.dumps({**summary, "wall_s": round(time.time() - started, 1)}, indent=2))


def _grpo_model(model: str | None, config: opts.GrpoConfig) -> str | None:
    if model is not None and config.init_from is not None:
        raise typer.BadParameter(f"--model {model!r} and model-{config.init_from} both name the start model")
    if config.init_from is None:
        return model
    if not Path(config.init_from).is_dir():
        raise typer.BadParameter(f"model-{config.init_from} names no local directory; pass --model <sft run>/final")
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
    from softtoken.latent.grpo import train_grpo
    from softtoken.latent.lora import prepare_trainable

    config = _resolve("grpo", train, grpo_options)
    configs = {"grpo": config, "lora": _resolve("lora", lora), "eval": _resolve("eval", val)}
    settings = _resolve("latent", latent) if latent is not None else None
    raw = {"model": model, "train": train, "grpo": grpo_options, "lora": lora, "latent": latent, "val": val, "data": data}
    _write_config(out, opts.resolved_record(raw, configs))
    started = time.time()
    net, tokenizer = load_latent_model(_grpo_model(model, config), settings)
    prepare_trainable(net, configs["lora"], latent_run=True)
    rows = prepare_rl_rows(load_rows(data, config.data_name, "train"), config)
    summary = train_grpo(net, tokenizer, rows, _eval_rows(data, configs["eval"]), config, configs["eval"], out)
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

    eval_config = _resolve("eval", val)
    settings = _resolve("latent", latent) if latent is not None else None
    net, tokenizer = load_latent_model(model, settings)
    started = time.time()
    result = evaluate(net, tokenizer, _eval_rows(data, eval_config), eval_config)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(asdict(result)))
    typer.echo(json.dumps({**result.summary(), "wall_s": round(time.time() - started, 1)}, indent=2))
