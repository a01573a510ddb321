"""`softtoken latent ...`: make-data, make-tiny-model, sft, grpo, eval."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from softtoken.exits import fail
from softtoken.latent import runs
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


@app.command("make-data")
def make_data(
    out: Path = typer.Option(..., help="directory for train/validation/test .jsonl"),
    task: str = typer.Option("arithmetic", help="arithmetic (word problems) or dial (state tracking mod 10)"),
    train_size: int = typer.Option(20000), val_size: int = typer.Option(200), test_size: int = typer.Option(500),
    min_steps: int = typer.Option(1), max_steps: int = typer.Option(4),
    max_operand: int | None = typer.Option(None, help="arithmetic: operands in [1, N] (default 20)"),
    modulus: int | None = typer.Option(None, help="dial: digits modulo N (default 10)"),
    seed: int = typer.Option(0, help="split seeds are seed, seed+1, seed+2 (disjoint)"),
    natural_language: bool | None = typer.Option(None, "--nl", help="arithmetic: the gsm8k-aug-nl step format"),
) -> None:
    """Write a seeded synthetic task in the GSM8K-Aug schema."""
    sizes = {"train": train_size, "validation": val_size, "test": test_size}
    extra = {"max_operand": max_operand, "modulus": modulus, "natural_language": natural_language}
    options = {"min_steps": min_steps, "max_steps": max_steps, **{k: v for k, v in extra.items() if v is not None}}
    with user_errors():
        splits = runs.task_splits(task, sizes, options, seed)
    runs.write_task_data(out, task, splits)
    typer.echo(f"wrote {train_size}/{val_size}/{test_size} {task} rows to {out}")


@app.command("make-tiny-model")
def make_tiny_model(out: Path = typer.Option(...), hidden: int = typer.Option(64), layers: int = typer.Option(2),
                    heads: int = typer.Option(4), seed: int = typer.Option(0),
                    task: str = typer.Option("arithmetic", help="the task whose words the tokenizer covers")) -> None:
    """Write a random tiny Llama + word tokenizer for a synthetic task (offline CPU runs)."""
    from softtoken.latent.tiny import save_tiny_model

    with user_errors():
        path = save_tiny_model(out, hidden=hidden, layers=layers, heads=heads, seed=seed, task=task)
    typer.echo(f"wrote {path}")


@app.command("sft")
def sft(
    train: str = typer.Option(..., help="e.g. gsm8k-aug/slice_proportion_85p/latent_flat_6/codi_loss_20/..."),
    out: Path = typer.Option(..., help="run directory (resumes if it holds checkpoints)"),
    model: str | None = typer.Option(None, help=MODEL_HELP),
    latent: str = typer.Option("", help="e.g. recurrent_filter_MLP/detach_binary_head_inputs"),
    lora: str = typer.Option("", help="e.g. llama_target_modules/latent_modules_to_save/r_128/alpha_32/dropout_0p1"),
    val: str = typer.Option(runs.DEFAULT_VAL["sft"], help="e.g. gsm8k-aug-val/latent_thinking"),
    data: str | None = typer.Option(None, help=DATA_HELP),
) -> None:
    """Supervised fine-tuning: CoT, No-CoT, or latent (CODI self-distillation)."""
    started = time.time()
    with user_errors():  # every input is read and checked before anything is written
        run = runs.prepare_sft(train=train, out=out, model=model, latent=latent, lora=lora, val=val, data=data)
    bar = run.progress_bar()
    try:
        summary = run.train(tracker=bar)
    finally:
        bar.close()
    typer.echo(json.dumps({**summary, "wall_s": round(time.time() - started, 1)}, indent=2))


@app.command("grpo")
def grpo(
    train: str = typer.Option(..., help="e.g. model-latent-6/slice_proportion_15p/batch_size_128/rel_len_penalty_1e-4/..."),
    out: Path = typer.Option(...),
    grpo_options: str = typer.Option("", "--grpo", help="e.g. standard-1a/cosine_lr/lr_1e-5/beta_1e-3/num_gen_16"),
    model: str | None = typer.Option(None, help="an exported SFT model, e.g. <sft run>/final"),
    lora: str = typer.Option("", help="e.g. llama_target_modules/latent_modules_to_save/r_32/alpha_32/dropout_0p1"),
    latent: str | None = typer.Option(None, help="override the saved latent settings (e.g. max_latent_steps_8)"),
    val: str = typer.Option(runs.DEFAULT_VAL["grpo"]),
    data: str | None = typer.Option(None, help=DATA_HELP),
) -> None:
    """GRPO with the format + correctness + relative-length reward and a KL to the SFT model."""
    started = time.time()
    with user_errors():  # every input is read and checked before anything is written
        run = runs.prepare_grpo(train=train, out=out, grpo=grpo_options, model=model, lora=lora, latent=latent,
                                val=val, data=data)
    bar = run.progress_bar()
    try:
        summary = run.train(tracker=bar)
    finally:
        bar.close()
    typer.echo(json.dumps({**summary, "wall_s": round(time.time() - started, 1)}, indent=2))


@app.command("eval")
def eval_command(
    model: str | None = typer.Option(None, help=MODEL_HELP),
    val: str = typer.Option(runs.DEFAULT_VAL["eval"], help="e.g. gsm8k-aug-test/latent_thinking"),
    latent: str | None = typer.Option(None, help="override the saved latent settings (e.g. max_latent_steps_8)"),
    data: str | None = typer.Option(None, help=DATA_HELP),
    out: Path | None = typer.Option(None, help="write the result (with per-row lengths) as JSON"),
) -> None:
    """Greedy accuracy and reasoning length (counted on ids; see softtoken.latent.evaluate)."""
    from dataclasses import asdict

    with user_errors():
        evaluation = runs.prepare_eval(model=model, val=val, latent=latent, data=data)
    started = time.time()
    result = evaluation.run()
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(asdict(result)))
    typer.echo(json.dumps({**result.summary(), "wall_s": round(time.time() - started, 1)}, indent=2))
