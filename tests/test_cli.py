import json

import pytest
from typer.testing import CliRunner

from softtoken.cli import app

runner = CliRunner()


def test_invert_writes_result_json_and_prints_summary(model_dir, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["invert", "w5 w6", "--model", str(model_dir), "--prompt-length", "2",
                                 "--steps", "3", "--out", str(out), "--quiet", "-o", "temperature=1.0",
                                 "-o", "eval_every=1"])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "result.json").read_text())
    assert data["steps_run"] <= 3 and data["config"]["temperature"] == 1.0
    assert data["target_ids"] == [9, 10]
    assert "prompt found" in result.output and "match" in result.output


@pytest.mark.parametrize("args, message", [
    (["invert", "", "--prompt-length", "2"], "target is empty"),
    (["invert", "w5", "--prompt-length", "0"], "prompt_length must be >= 1, got 0"),
    (["invert", "w5", "--model", "/no/such/model"], "not found"),
    (["invert", "w5", "-o", "decouple_learnable_temperature=true", "-o", "learnable_temperature=false"],
     "needs learnable_temperature"),
    (["invert", "w5", "-o", "bogus=1"], "bogus"),
    (["invert", "w5", "--preset", "nope"], "unknown preset"),
    (["invert", "--target-ids", "1,x"], "comma-separated"),
])
def test_invert_bad_input_is_one_line_error(model_dir, args, message):
    if "--model" not in args:
        args = args + ["--model", str(model_dir)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_invert_with_program_config_file(model_dir, tmp_path):
    config = tmp_path / "program.yaml"
    config.write_text("eval_every: 1\nstages:\n  - steps: 2\n    trajectories: 2\n  - steps: 1\n    trajectories: 2\n"
                      "    hard: {start: 1.0, end: 1.0, schedule: constant}\n")
    out = tmp_path / "run"
    result = runner.invoke(app, ["invert", "w5 w6", "--model", str(model_dir), "--prompt-length", "2", "--quiet",
                                 "--config", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "result.json").read_text())
    assert data["method"] == "program" and data["steps_run"] <= 3 and len(data["config"]["stages"]) == 2


def test_design_runs_objectives_without_target(model_dir, tmp_path):
    config = tmp_path / "design.yaml"
    config.write_text("prompt_length: 3\nseed: 1\nstages:\n  - steps: 3\n    trajectories: 2\n    objectives:\n"
                      "      - {name: fluency}\n      - {name: entropy, weight: 0.5}\n")
    out = tmp_path / "design"
    result = runner.invoke(app, ["design", str(config), "--model", str(model_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "design.json").read_text())
    assert len(data["trajectories"]) == 2 and set(data["trajectories"][0]["objective_losses"]) == {"fluency", "entropy"}
    assert all(len(t["prompt_ids"]) == 3 for t in data["trajectories"])


@pytest.mark.parametrize("text, message", [
    ("stages: []\nprompt_length: 2\n", "non-empty 'stages'"),
    ("prompt_length: 2\nstages:\n  - steps: 2\n", "no objectives"),
    ("- 1\n- 2\n", "mapping"),
    ("prompt_length: 2\nbogus: 1\nstages: []\n", "bogus"),
])
def test_design_bad_config_is_one_line_error(model_dir, tmp_path, text, message):
    config = tmp_path / "design.yaml"
    config.write_text(text)
    result = runner.invoke(app, ["design", str(config), "--model", str(model_dir)])
    assert result.exit_code == 2 and message in result.output, result.output
