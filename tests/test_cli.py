import json

import pytest
from typer.testing import CliRunner

from softtoken.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_model, tiny_tokenizer):
    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_model.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


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
