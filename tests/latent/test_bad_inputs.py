"""Every bad input to `latent sft`/`grpo` is one `error:` line, exit status 2, and nothing in --out."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from softtoken.latent.cli import app

RUNNER = CliRunner()
TRAIN = "latent_flat_2/batch_size_4/steps_2/val_period_100"
VAL = "gsm8k-aug-val/latent_thinking/max_new_tokens_4/max_examples_2"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    for args in (["make-data", "--out", root / "data", "--train-size", 12, "--val-size", 4, "--test-size", 2],
                 ["make-tiny-model", "--out", root / "tiny", "--hidden", 32]):
        assert RUNNER.invoke(app, [str(a) for a in args]).exit_code == 0
    return root


def edit_line(path, number, edit):
    lines = path.read_text().splitlines()
    lines[number - 1] = edit(json.loads(lines[number - 1]))
    path.write_text("\n".join(lines) + "\n")


def without(key):
    return lambda row: json.dumps({k: v for k, v in row.items() if k != key})


def replaced(key, value):
    return lambda row: json.dumps({**row, key: value})


# (case, command, --train, data edit, text the error line must contain)
CASES = [
    ("empty --train", "sft", "", None, "--train is empty"),
    ("slashes only --train", "grpo", "/", None, "--train is empty"),
    ("missing data dir", "sft", TRAIN, lambda d: shutil.rmtree(d), "data path not found"),
    ("empty data dir", "sft", TRAIN, lambda d: [p.unlink() for p in d.iterdir()], "has no train.jsonl"),
    ("empty train file", "sft", TRAIN, lambda d: (d / "train.jsonl").write_text("\n"), "train.jsonl holds no rows"),
    ("malformed JSONL line", "sft", TRAIN, lambda d: edit_line(d / "train.jsonl", 7, lambda row: '{"question": "x",'),
     "train.jsonl line 7: not valid JSON"),
    ("row missing a key", "sft", TRAIN, lambda d: edit_line(d / "train.jsonl", 7, without("answer")),
     "train.jsonl line 7: missing key 'answer'"),
    ("steps not a list", "grpo", "batch_size_4/num_gen_2/steps_2",
     lambda d: edit_line(d / "train.jsonl", 2, replaced("steps", "1+1")), "train.jsonl line 2: 'steps' must be a list"),
    ("bad validation row", "sft", TRAIN, lambda d: edit_line(d / "validation.jsonl", 3, without("question")),
     "validation.jsonl line 3: missing key 'question'"),
    ("unscorable validation answer", "sft", TRAIN,
     lambda d: edit_line(d / "validation.jsonl", 2, replaced("answer", "n/a")),
     "validation.jsonl line 2: 'answer' must be"),
    ("fractional integer option", "sft", "latent_flat_2/steps_2p5", None, "'steps_2p5': expected an integer"),
    ("unreadable number", "sft", "latent_flat_2/lr_1x", None, "'lr_1x': cannot read '1x' as a number"),
    ("unknown option", "sft", "latent_flat_2/steps_two", None, "unknown sft option 'steps_two'"),
    ("out-of-range option", "grpo", "batch_size_4/num_gen_3", None, "batch_size must be a multiple of num_generations"),
]


@pytest.mark.parametrize(("command", "train", "edit", "expected"), [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_bad_input_is_one_error_line_and_writes_nothing(workspace, tmp_path, command, train, edit, expected):
    data, out = tmp_path / "data", tmp_path / "out"
    shutil.copytree(workspace / "data", data)
    if edit is not None:
        edit(data)
    result = RUNNER.invoke(app, [command, "--train", train, "--model", str(workspace / "tiny"), "--data", str(data),
                                 "--val", VAL, "--out", str(out)])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and expected in line
    assert not out.exists()  # in particular no config.json
