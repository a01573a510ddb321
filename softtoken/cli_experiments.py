"""Experiment commands: generate-targets, sweep, report, bench, hparams-table (merged into the main CLI)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from softtoken.exits import fail
from softtoken.experiments.backends import WorkerDied
from softtoken.experiments.spec import SpecError
from softtoken.experiments.store import StoreInUse

app = typer.Typer(help="Target sets, sweeps, reports and benchmarks.", no_args_is_help=True,
                  pretty_exceptions_enable=False)

USER_ERRORS = (ValueError, FileNotFoundError, WorkerDied, StoreInUse)



def _message(err: Exception) -> str:
    if isinstance(err, SpecError):
        return str(err)
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _items(text: str) -> list[str]:
    """A comma-separated option's non-empty items, stripped."""
    return [item.strip() for item in text.split(",") if item.strip()]


def _seed_list(seeds: Optional[str]) -> Optional[list[int]]:
    """`--seeds 0,2` as [0, 2]; a value that is not a comma-separated list of integers is a one-line error."""
    if seeds is None:
        return None
    items = _items(seeds)
    if not items or not all(item.lstrip("-").isdigit() for item in items):
        raise ValueError(f"--seeds must be comma-separated integers, e.g. 0,1; got {seeds!r}")
    return [int(item) for item in items]


def _backend(backend: str, workers: int, address: Optional[str], cpus_per_run: float, gpus_per_run: float,
             max_retries: int):
    from softtoken.experiments.backends import make_backend

    if backend == "local":
        return make_backend("local", workers=workers)
    return make_backend("ray", address=address, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run,
                        max_retries=max_retries, local_cpus=None if address else workers)


@app.command("generate-targets")
def generate_targets(
    out: Path = typer.Option(..., help="Output JSON file (reference format, plus token ids)."),
    model: Optional[str] = typer.Option(None, help="HF id, local directory or .gguf; default: embedded model."),
    k_min: int = typer.Option(1), k_max: int = typer.Option(25), k_step: int = typer.Option(5),
    num_samples: int = typer.Option(5, help="Targets per k (or prompts, with --reconstruction)."),
    max_length: int = typer.Option(20, help="Tokens per target (or per greedy output, with --reconstruction)."),
    noise_factor: float = typer.Option(1.0, help="Std of the rank noise around k."),
    seed: int = typer.Option(42),
    bos_token: Optional[str] = typer.Option(None, help="Start token when the tokenizer has no BOS."),
    reconstruction: Optional[str] = typer.Option(
        None, help="Make a prompt-reconstruction set instead: 'random' prompts or a text FILE to slice."),
    prompt_length: int = typer.Option(10, help="Ground-truth prompt length (with --reconstruction)."),
    device: str = typer.Option("cpu"), dtype: str = typer.Option("float32"),
) -> None:
    """Generate a rank-k target set (or, with --reconstruction, ground-truth prompts and greedy outputs)."""
    from softtoken.data.reconstruction import (
        ReconstructionConfig,
        generate_reconstruction_set,
    )
    from softtoken.data.targets import RankKConfig, generate_rank_k
    from softtoken.experiments.files import write_json_atomic
    from softtoken.experiments.runner import cached_lm

    logging.basicConfig(level=logging.WARNING)
    try:
        if reconstruction is None:
            config = RankKConfig(k_min=k_min, k_max=k_max, k_step=k_step, num_samples=num_samples,
                                 max_length=max_length, noise_factor=noise_factor, seed=seed, bos_token=bos_token)
            data = generate_rank_k(cached_lm(model, device, dtype), config, model_name=model or "embedded")
        else:
            config = ReconstructionConfig(source=reconstruction, num_samples=num_samples,
                                          prompt_length=prompt_length, output_length=max_length, seed=seed)
            data = generate_reconstruction_set(cached_lm(model, device, dtype), config,
                                               model_name=model or "embedded")
    except USER_ERRORS as err:
        fail(_message(err))
    write_json_atomic(out, data)
    typer.echo(f"wrote {len(data['samples'])} targets to {out}")


@app.command()
def sweep(
    spec_file: Path = typer.Argument(..., help="Sweep spec (YAML)."),
    out: Path = typer.Option(..., help="Run directory; an existing one is resumed."),
    model: Optional[str] = typer.Option(None, help="Override the spec's model."),
    dataset: Optional[str] = typer.Option(None, help="Override the spec's dataset with a target file (latent: "
                                          "a data directory)."),
    backend: str = typer.Option("local", help="local or ray."),
    workers: int = typer.Option(1, help="Local worker processes (or CPUs of a local Ray)."),
    address: Optional[str] = typer.Option(None, help="Ray cluster address (e.g. auto); default: start a local Ray."),
    cpus_per_run: float = typer.Option(1.0, help="Ray: CPUs reserved per run."),
    gpus_per_run: float = typer.Option(0.0, help="Ray: GPUs per run; fractions pack runs on one GPU."),
    max_retries: int = typer.Option(3, help="Ray: re-submissions of a run whose worker died."),
    retry_failed: bool = typer.Option(False, help="Run again the runs recorded as failed."),
    dry_run: bool = typer.Option(False, help="Validate and count runs, run nothing."),
    quiet: bool = typer.Option(False, help="No progress bar."),
    only: Optional[str] = typer.Option(None, help="Latent: comma-separated entry labels to run now, with the "
                                       "entries they start from; the others wait for a later call."),
) -> None:
    """Run every (method, config, seed, target) of SPEC not yet finished in OUT; a latent spec (kind: latent)
    runs every (entry, seed)."""
    from softtoken.experiments.spec import load_spec, read_spec_file, spec_kind
    from softtoken.experiments.sweep import run_sweep, validate, with_overrides

    logging.basicConfig(level=logging.WARNING)
    try:
        if spec_kind(read_spec_file(spec_file)) == "latent":
            if backend != "local":
                raise ValueError("latent sweeps run on the local backend; use --workers N")
            labels = [label.strip() for label in only.split(",")] if only else None
            summary = _latent_sweep(spec_file, out, model, dataset, workers, retry_failed, dry_run, quiet, labels)
        else:
            if only:
                raise ValueError("--only selects entries of a latent spec; an inversion spec runs whole")
            spec = with_overrides(load_spec(spec_file), model=model, dataset_path=dataset)
            summary = None
            if dry_run:
                points = validate(spec)
                typer.echo(f"spec is valid: {len(points)} configurations; "
                           f"{sum(len(p.seeds) for p in points)} (configuration, seed) pairs per target")
            else:
                backend_ = _backend(backend, workers, address, cpus_per_run, gpus_per_run, max_retries)
                summary = run_sweep(spec, out, backend_, retry_failed=retry_failed, progress=not quiet)
    except USER_ERRORS as err:
        fail(_message(err))
    if summary is not None:
        typer.echo(f"{summary.total} runs: {summary.skipped} already done, {summary.ok} ok, {summary.failed} "
                   f"failed -> {out / 'results.jsonl'}")


def _latent_sweep(spec_file: Path, out: Path, model: Optional[str], dataset: Optional[str], workers: int,
                  retry_failed: bool, dry_run: bool, quiet: bool, only: Optional[list[str]]):
    """The summary of a latent sweep, or None after a dry run (which prints the count)."""
    from softtoken.experiments.latent_spec import load_latent_spec
    from softtoken.experiments.latent_sweep import run_latent_sweep

    spec = load_latent_spec(spec_file, model=model, data_path=dataset)
    if dry_run:
        typer.echo(f"spec is valid: {len(spec.points)} entries; {len(spec.points) * len(spec.seeds)} "
                   "(entry, seed) runs")
        return None
    return run_latent_sweep(spec, out, workers=workers, retry_failed=retry_failed, progress=not quiet, only=only)


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="A sweep's run directory."),
    out: Optional[Path] = typer.Option(None, help="Where to write the report (default: RUN_DIR)."),
    figures: bool = typer.Option(True, help="Write PNG figures (needs matplotlib)."),
) -> None:
    """Write report.md, report.html, table.tex and figures/ for RUN_DIR (a latent sweep's tables are also printed)."""
    from softtoken.experiments.report import write_report
    from softtoken.experiments.store import sweep_kind

    try:
        paths = write_report(run_dir, out, figures=figures)
    except USER_ERRORS as err:
        fail(_message(err))
    if sweep_kind(run_dir) == "latent":
        typer.echo(paths["markdown"].read_text(encoding="utf-8"))
    typer.echo("\n".join(f"{kind:9s}: {path}" for kind, path in paths.items()))


@app.command()
def bench(
    spec_file: Path = typer.Argument(..., help="Bench spec (YAML, a sweep spec with one shared budget)."),
    out: Path = typer.Option(..., help="Run directory; an existing one is resumed."),
    model: Optional[str] = typer.Option(None, help="Override the spec's model."),
    seconds: Optional[float] = typer.Option(None, help="Override the per-target wall-clock budget."),
    steps: Optional[int] = typer.Option(None, help="Override the per-target step budget."),
    limit_targets: Optional[int] = typer.Option(None, help="Only the first N targets (reduced runs)."),
    methods: Optional[str] = typer.Option(None, help="Comma-separated labels to keep (reduced runs)."),
    seeds: Optional[str] = typer.Option(None, help="Comma-separated seeds to keep (reduced runs)."),
    targets: Optional[str] = typer.Option(None, help="Comma-separated target ids to keep (reduced runs)."),
    workers: int = typer.Option(1, help="Parallel runs; >1 shares the CPU and distorts wall-clock budgets."),
    quiet: bool = typer.Option(False, help="No progress bar."),
) -> None:
    """Run SPEC's methods on the same targets under the same budget; write OUT/bench.md and the report."""
    from softtoken.experiments.bench import bench_spec, run_bench
    from softtoken.experiments.report import write_report
    from softtoken.experiments.spec import load_spec
    from softtoken.experiments.sweep import with_overrides

    logging.basicConfig(level=logging.WARNING)
    labels = _items(methods) if methods else None
    target_ids = _items(targets) if targets else None
    try:
        spec = bench_spec(with_overrides(load_spec(spec_file), model=model), seconds=seconds, steps=steps,
                          limit_targets=limit_targets, labels=labels, seeds=_seed_list(seeds), targets=target_ids)
        path = run_bench(spec, out, _backend("local", workers, None, 1.0, 0.0, 0), progress=not quiet)
        write_report(out)
    except USER_ERRORS as err:
        fail(_message(err))
    typer.echo(path.read_text())
    typer.echo(f"comparison: {path}")


@app.command("hparams-table")
def hparams_table(spec_file: Path = typer.Argument(..., help="Sweep spec (YAML).")) -> None:
    """Print SPEC's hyper-parameters as a markdown table, one column per method entry."""
    from softtoken.experiments.hparams import hparams_table as render
    from softtoken.experiments.spec import load_spec

    try:
        typer.echo(render(load_spec(spec_file)), nl=False)
    except USER_ERRORS as err:
        fail(_message(err))
