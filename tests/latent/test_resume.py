"""Fault tests of a run directory: a resume with another model or data is refused before anything is
touched, and a killed run resumes to exactly the result of an uninterrupted one."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import softtoken.latent.sft as sft_module
from softtoken.latent.cli import app

RUNNER = CliRunner()
VAL = "gsm8k-aug-val/latent_thinking/max_new_tokens_4/max_examples_2"
SHORT = "latent_flat_2/batch_size_4/steps_2/val_period_100/save_checkpoint_period_1"
# LoRA with dropout: the resumed run must replay the dropout masks of the uninterrupted one.
LORA = "llama_target_modules/latent_modules_to_save/r_4/alpha_8/dropout_0p1"
LONG = "latent_flat_2/batch_size_4/steps_6/lr_1e-3/codi_loss_1/val_period_3/save_checkpoint_period_2"


def invoke(*args):
    return RUNNER.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    commands = [
        ("make-data", "--out", root / "data", "--train-size", 16, "--val-size", 4, "--test-size", 2),
        ("make-data", "--out", root / "other_data", "--train-size", 16, "--val-size", 4, "--test-size", 2, "--seed", 9),
        ("make-tiny-model", "--out", root / "tiny", "--hidden", 32),
        ("make-tiny-model", "--out", root / "reseeded", "--hidden", 32, "--seed", 1),  # same shapes, other weights
        ("make-tiny-model", "--out", root / "wider", "--hidden", 48),
    ]
    for command in commands:
        assert invoke(*command).exit_code == 0
    shutil.copytree(root / "data", root / "other_val")
    shutil.copy(root / "other_data" / "validation.jsonl", root / "other_val" / "validation.jsonl")
    return root


def sft(workspace, out, train, model="tiny", data="data", lora=""):
    return invoke("sft", "--train", train, "--lora", lora, "--model", workspace / model, "--data", workspace / data,
                  "--val", VAL, "--out", out)


def snapshot(run_dir):
    return {p.relative_to(run_dir): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("model", "data", "train", "expected"), [
    ("wider", "data", SHORT, "--model"),  # another shape: used to fail with a size mismatch after config.json changed
    ("reseeded", "data", SHORT, "--model"),
    ("tiny", "other_data", SHORT, "training rows"),
    ("tiny", "other_val", SHORT, "evaluation rows"),
    ("tiny", "data", SHORT.replace("steps_2", "steps_3"), "other options"),
])
def test_resume_with_another_model_data_or_options_is_refused_and_touches_nothing(workspace, tmp_path, model, data,
                                                                                   train, expected):
    out = tmp_path / "run"
    assert sft(workspace, out, SHORT).exit_code == 0
    shutil.rmtree(out / "checkpoints" / "step_000002")  # as if killed after step 1
    before = snapshot(out)
    result = sft(workspace, out, train, model=model, data=data)
    assert result.exit_code == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and expected in last and "use a new --out" in last
    assert snapshot(out) == before  # config.json byte-identical, nothing else written


def test_resume_from_copies_of_model_and_data_is_accepted(workspace, tmp_path):
    out = tmp_path / "run"
    assert sft(workspace, out, SHORT).exit_code == 0
    config = (out / "config.json").read_bytes()
    shutil.copytree(workspace / "tiny", tmp_path / "tiny_copy")
    shutil.copytree(workspace / "data", tmp_path / "data_copy")
    result = invoke("sft", "--train", SHORT, "--model", tmp_path / "tiny_copy", "--data", tmp_path / "data_copy",
                    "--val", VAL, "--out", out)
    assert result.exit_code == 0, result.output
    assert (out / "config.json").read_bytes() == config  # still names the paths the run started from


class Killed(Exception):
    pass


def fresh_process(key):
    """Another global generator state, as another process or caller would leave it: a run (its filter, its
    LoRA init, its dropout masks) must depend on its seed alone."""
    torch.manual_seed(key)


def test_killed_sft_resumes_to_the_uninterrupted_result(workspace, tmp_path, monkeypatch):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    fresh_process(1)
    assert sft(workspace, straight, LONG, lora=LORA).exit_code == 0

    def kill_at_step_5(n, batch, seed, step):
        if step == 5:  # the sixth step: metrics for steps 1-5 are logged, the last checkpoint is step 4
            raise Killed
        return batch_indices(n, batch, seed, step)

    batch_indices = sft_module.batch_indices
    monkeypatch.setattr(sft_module, "batch_indices", kill_at_step_5)
    fresh_process(2)
    assert isinstance(sft(workspace, killed, LONG, lora=LORA).exception, Killed)
    monkeypatch.setattr(sft_module, "batch_indices", batch_indices)
    with (killed / "metrics.jsonl").open("a") as handle:
        handle.write('{"step": 6, "loss": 0.1')  # a kill in the middle of a write
    fresh_process(3)
    assert sft(workspace, killed, LONG, lora=LORA).exit_code == 0

    records = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert (killed / "metrics.jsonl").read_text() == (straight / "metrics.jsonl").read_text()
    for name in ("summary.json", "best_val/val.json"):
        assert json.loads((killed / name).read_text()) == json.loads((straight / name).read_text())
    for a, b in zip(load_file(killed / "final" / "latent.safetensors").items(),
                    load_file(straight / "final" / "latent.safetensors").items(), strict=True):
        assert a[0] == b[0] and a[1].equal(b[1])
