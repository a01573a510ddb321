"""The `softtoken` command line."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Optional

import typer
import yaml

from softtoken.api import check_device, check_target, plan_design, plan_invert
from softtoken.api import design as run_design
from softtoken.cli_experiments import app as experiments_app
from softtoken.data.targets import load_targets
from softtoken.exits import fail
from softtoken.experiments.batch import invert_targets, summary_rows, universal_problem
from softtoken.experiments.files import write_json_atomic
from softtoken.experiments.progress import ProgressBarTracker
from softtoken.experiments.store import StoreInUse
from softtoken.latent.cli import app as latent_app
from softtoken.lm.embedded import EmbeddedModelMissing
from softtoken.methods import Problem, Result

app = typer.Typer(help="Optimise what goes into a frozen causal language model.", no_args_is_help=True,
                  pretty_exceptions_enable=False)

app.add_typer(latent_app, name="latent", help="Adaptive latent reasoning: SFT, GRPO, evaluation.")
app.add_typer(experiments_app)  # generate-targets, sweep, report, bench, hparams-table at the top level


@app.callback()
def root() -> None:
    """softtoken: inversion, prompt design and latent reasoning on frozen causal LMs."""


USER_ERRORS = (ValueError, EmbeddedModelMissing, FloatingPointError, FileNotFoundError)


def parse_ids(text: str) -> tuple[int, ...]:
    try:
        ids = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        fail(f"--target-ids must be comma-separated integers, got {text!r}")
    if not ids:
        fail(f"--target-ids must list at least one integer, got {text!r}")
    return ids


def prepare_out(out: Path) -> None:
    """Create the output directory and prove it writable before the run, so a finished result has a home."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        fail(f"--out {str(out)!r} is not a writable directory ({err.strerror or err})")


def save_json(path: Path, data: dict) -> Path:
    """Write a finished result; if that still fails, keep it in a temporary file (or print it) and say where."""
    try:
        return write_json_atomic(path, data)
    except OSError as err:
        reason = err.strerror or str(err)
    try:
        fd, rescue = tempfile.mkstemp(prefix=f"softtoken-{path.stem}-", suffix=".json")
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2)
    except OSError:
        typer.echo(json.dumps(data))
        fail(f"could not write {path} ({reason}) nor a temporary file; the result is printed above")
    fail(f"could not write {path} ({reason}); the result is saved in {rescue}")


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
    for index, entry in enumerate(result.metrics.get("eval/targets", [])):  # a universal prompt's targets
        lines.append(f"target {index:<6}: {entry['output_text']!r} for {entry['target_text']!r} "
                     f"(exact {entry['exact_match']}, LCS {entry['lcs_ratio']:.2f})")
    overtime = result.metrics.get("time/overtime_s") or 0.0
    if overtime > 0.05:
        lines.append(f"overtime     : {overtime:.1f} s past the time budget (a step in progress and the final judge)")
    typer.echo("\n".join(lines))


@app.command()
def invert(
    text: Optional[str] = typer.Argument(None, help="Target text the model should emit."),
    target_ids: Optional[str] = typer.Option(None, help="Target token ids, comma-separated (instead of TEXT)."),
    targets: Optional[Path] = typer.Option(None, help="Many targets (JSON, JSONL or text file): one result line each."),
    universal: bool = typer.Option(False, help="With --targets: ONE prompt for all of them, each in its context."),
    model: Optional[str] = typer.Option(None, help="HF id, local directory or .gguf file; default: embedded SmolLM2."),
    prompt_length: int = typer.Option(10, help="Number of prompt tokens to find."),
    method: Optional[str] = typer.Option(None, help="Method name (default dlmi, or the preset's method)."),
    preset: Optional[str] = typer.Option(None, help="Named preset, e.g. dlmi-paper."),
    steps: Optional[int] = typer.Option(None, help="Step budget (default: the config's)."),
    time_budget: Optional[float] = typer.Option(None, help="Wall-clock budget in seconds (per target)."),
    seed: int = typer.Option(0, help="Random seed; a run is fully determined by config and seed."),
    option: list[str] = typer.Option([], "--option", "-o", help="Config override KEY=VALUE (repeatable)."),
    config: Optional[Path] = typer.Option(None, help="YAML: a program ({stages: [...]}) or {method, preset, options}."),
    prefix: str = typer.Option("", help="Fixed text before the prompt (inside the user message with --chat)."),
    suffix: str = typer.Option("", help="Fixed text after the prompt, before the target."),
    template: Optional[str] = typer.Option(None, help="Text around the prompt with exactly one {prompt}."),
    chat: bool = typer.Option(False, help="The prompt is the user message of the model's chat template."),
    system: Optional[str] = typer.Option(None, help="With --chat: the system message."),
    allowed: Optional[str] = typer.Option(None, help="Prompt vocabulary: ascii, printable, words, decodable (no "
                                          "partial characters), first:N (ids below N) or a word-list FILE."),
    banned: list[str] = typer.Option([], help="A text whose tokens the prompt may not use (repeatable)."),
    out: Path = typer.Option(Path("runs/invert"), help="Directory for result.json (results.jsonl with --targets)."),
    device: str = typer.Option("cpu", help="cpu or cuda[:N]."),
    dtype: str = typer.Option("float32", help="float32 or bfloat16."),
    quiet: bool = typer.Option(False, help="No progress bar."),
) -> None:
    """Find a discrete prompt that makes the model greedily emit TEXT (or each of --targets); write OUT/."""
    logging.basicConfig(level=logging.WARNING)
    ids = parse_ids(target_ids) if target_ids is not None else None
    try:
        if targets is not None:
            if text or ids is not None:
                fail("--targets replaces TEXT and --target-ids; give one or the other")
            target_set = load_targets(targets)
        else:
            if universal:
                fail("--universal needs --targets FILE")
            check_target(text, ids)
        if config is not None and (method or preset or option):
            fail("--config replaces --method/--preset/--option; give one or the other")
        plan = plan_invert(model, method=method, preset=preset, config=read_yaml(config) if config else None,
                           prompt_length=prompt_length, steps=steps, time_budget=time_budget, seed=seed,
                           device=device, dtype=dtype, prefix=prefix, suffix=suffix, template=template, chat=chat,
                           system=system, allowed=allowed, banned=banned, **parse_options(option))
        prepare_out(out)
        lm = plan.load()
        progress = None if quiet else lambda: ProgressBarTracker(plan.budget.resolve_steps(plan.runner.config.epochs))
        if targets is not None and not universal:
            invert_each(lm, plan, target_set, out, progress)
            return
        if universal:
            problem = universal_problem(lm, target_set, plan.batch(), model_name=lm.name)
        else:
            framed = plan.framed(lm)
            problem = Problem(lm=framed, target_ids=ids or framed.encode_target(text), prompt_length=prompt_length,
                              seed=seed)
        tracker = progress() if progress else None
        try:
            result = plan.runner.run(problem, plan.budget, tracker)
        finally:
            if tracker is not None:
                tracker.close()
    except USER_ERRORS as err:
        fail(str(err).splitlines()[0] if str(err) else type(err).__name__)
    print_summary(result)
    typer.echo(f"result       : {save_json(out / 'result.json', result.to_dict())}")


def invert_each(lm, plan, target_set, out: Path, progress) -> None:
    """--targets: each target in turn into OUT/results.jsonl (a rerun resumes), then the summary table."""
    def report(target, result, error: str) -> None:
        lcs = result.metrics["eval/lcs_ratio"] if result else 0.0
        status = f"exact={result.exact_match} LCS {lcs:.2f}" if result else f"failed: {error}"
        typer.echo(f"{target.id}: {status}", err=True)

    try:
        records = invert_targets(lm, plan.runner, target_set, plan.batch(), out=out, model_name=lm.name,
                                 on_result=report, tracker_factory=progress)
    except StoreInUse as err:
        fail(str(err))
    rows = summary_rows(records)
    header = ["target", "exact", "LCS", "steps", "seconds", "prompt"]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    exact = sum(row[1] == "yes" for row in rows)
    typer.echo(f"{exact} of {len(rows)} exact; results: {out / 'results.jsonl'}")


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
        plan_design(data)  # a bad config is refused before --out is created; run_design checks it again
        check_device(model, device, dtype)
        prepare_out(out)
        report = run_design(data, model, device=device, dtype=dtype)
    except USER_ERRORS as err:
        fail(str(err).splitlines()[0] if str(err) else type(err).__name__)
    for index, entry in enumerate(report["trajectories"]):
        line = f"[{index}] loss {entry['loss']:.4f}  prompt {entry['prompt_text']!r}"
        if "output_text" in entry:
            line += f"  -> {entry['output_text']!r} (exact {entry['exact_match']})"
        typer.echo(line)
    typer.echo(f"result: {save_json(out / 'design.json', report)}")
