"""The `softtoken` command line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer
import yaml

from softtoken.api import design as run_design
from softtoken.api import method_from_config
from softtoken.cli_experiments import app as experiments_app
from softtoken.experiments.files import write_json_atomic
from softtoken.experiments.progress import ProgressBarTracker
from softtoken.latent.cli import app as latent_app
from softtoken.lm.embedded import EmbeddedModelMissing
from softtoken.lm.softlm import as_softlm
from softtoken.methods import Budget, Problem, Result, build_method

app = typer.Typer(help="Optimise what goes into a frozen causal language model.", no_args_is_help=True,
                  pretty_exceptions_enable=False)

app.add_typer(latent_app, name="latent", help="Adaptive latent reasoning: SFT, GRPO, evaluation.")
app.add_typer(experiments_app)  # generate-targets, sweep, report, bench, hparams-table at the top level


@app.callback()
def root() -> None:
    """softtoken: inversion, prompt design and latent reasoning on frozen causal LMs."""


USER_ERRORS = (ValueError, EmbeddedModelMissing, FloatingPointError, FileNotFoundError)


def fail(message: str) -> None:
    """One clear line on stderr and exit status 2, never a traceback."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def parse_ids(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        fail(f"--target-ids must be comma-separated integers, got {text!r}")


def parse_options(pairs: list[str]) -> dict:
    """KEY=VALUE pairs; values are read as YAML scalars (1e-2, true, 100)."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--option must look like KEY=VALUE, got {pair!r}")
        options[key.strip()] = yaml.safe_load(value)
    return options


def read_yaml(path: Path) -> dict:
    """A YAML mapping from a file, with one-line errors."""
    if not path.is_file():
        fail(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        fail(f"config file {path} is not valid YAML: {str(err).splitlines()[0]}")
    if not isinstance(data, dict):
        fail(f"config file {path} must hold a mapping, got {type(data).__name__}")
    return data


def print_summary(result: Result) -> None:
    matched = "YES (exact match)" if result.exact_match else "no"
    lines = [
        f"prompt found : {result.prompt_text!r}  ids={result.prompt_ids}",
        f"model output : {result.output_text!r}",
        f"target       : {result.target_text!r}",
        f"match        : {matched}; LCS {result.metrics['eval/lcs_ratio']:.2f}, "
        f"token accuracy {result.metrics['eval/token_accuracy']:.2f}, "
        f"round-trip exact {result.metrics['eval/roundtrip_exact']}",
        f"steps        : {result.steps_run} in {result.wall_time_s:.1f} s; first success at step {result.success_step}",
    ]
    typer.echo("\n".join(lines))


@app.command()
def invert(
    text: Optional[str] = typer.Argument(None, help="Target text the model should emit."),
    target_ids: Optional[str] = typer.Option(None, help="Target token ids, comma-separated (instead of TEXT)."),
    model: Optional[str] = typer.Option(None, help="HF id, local directory or .gguf file; default: embedded SmolLM2."),
    prompt_length: int = typer.Option(10, help="Number of prompt tokens to find."),
    method: Optional[str] = typer.Option(None, help="Method name (default dlmi, or the preset's method)."),
    preset: Optional[str] = typer.Option(None, help="Named preset, e.g. dlmi-paper."),
    steps: Optional[int] = typer.Option(None, help="Step budget (default: the config's)."),
    time_budget: Optional[float] = typer.Option(None, help="Wall-clock budget in seconds."),
    seed: int = typer.Option(0, help="Random seed; a run is fully determined by config and seed."),
    option: list[str] = typer.Option([], "--option", "-o", help="Config override KEY=VALUE (repeatable)."),
    config: Optional[Path] = typer.Option(None, help="YAML: a program ({stages: [...]}) or {method, preset, options}."),
    out: Path = typer.Option(Path("runs/invert"), help="Directory for result.json."),
    device: str = typer.Option("cpu", help="cpu or cuda[:N]."),
    dtype: str = typer.Option("float32", help="float32 or bfloat16."),
    quiet: bool = typer.Option(False, help="No progress bar."),
) -> None:
    """Find a discrete prompt that makes the model greedily emit TEXT; write DIR/result.json."""
    logging.basicConfig(level=logging.WARNING)
    ids = parse_ids(target_ids) if target_ids else None
    if ids is None and not text:
        fail("target is empty: give TEXT or --target-ids")
    try:
        if config is not None:
            if method or preset or option:
                fail("--config replaces --method/--preset/--option; give one or the other")
            runner = method_from_config(read_yaml(config))
        else:
            runner = build_method(method, preset, parse_options(option))
        lm = as_softlm(model, device=device, dtype=dtype)
        problem = Problem(lm=lm, target_ids=ids or tuple(lm.encode(text)), prompt_length=prompt_length, seed=seed)
        budget = Budget(steps=steps, seconds=time_budget)
        tracker = None if quiet else ProgressBarTracker(budget.resolve_steps(runner.config.epochs))
        try:
            result = runner.run(problem, budget, tracker)
        finally:
            if tracker is not None:
                tracker.close()
    except USER_ERRORS as err:
        fail(str(err).splitlines()[0] if str(err) else type(err).__name__)
    path = write_json_atomic(out / "result.json", result.to_dict())
    print_summary(result)
    typer.echo(f"result       : {path}")


@app.command()
def design(
    config: Path = typer.Argument(..., help="YAML: prompt_length, stages (with objectives), optional target, seed."),
    model: Optional[str] = typer.Option(None, help="HF id, local directory or .gguf file; default: embedded SmolLM2."),
    out: Path = typer.Option(Path("runs/design"), help="Directory for design.json."),
    device: str = typer.Option("cpu", help="cpu or cuda[:N]."),
    dtype: str = typer.Option("float32", help="float32 or bfloat16."),
) -> None:
    """Design prompts under several objectives (a program of engine stages); write DIR/design.json."""
    logging.basicConfig(level=logging.WARNING)
    data = read_yaml(config)
    try:
        report = run_design(data, model, device=device, dtype=dtype)
    except USER_ERRORS as err:
        fail(str(err).splitlines()[0] if str(err) else type(err).__name__)
    path = write_json_atomic(out / "design.json", report)
    for index, entry in enumerate(report["trajectories"]):
        line = f"[{index}] loss {entry['loss']:.4f}  prompt {entry['prompt_text']!r}"
        if "output_text" in entry:
            line += f"  -> {entry['output_text']!r} (exact {entry['exact_match']})"
        typer.echo(line)
    typer.echo(f"result: {path}")
