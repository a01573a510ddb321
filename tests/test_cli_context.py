"""The command line in context: prefix/suffix/template/chat, vocabulary limits, many targets, universal."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from softtoken.cli import app

runner = CliRunner()
SEARCH = ["--preset", "gcg", "-o", "search_width=16", "-o", "topk=8", "-o", "init_text= w5", "-o", "eval_every=1"]


def invoke(model_dir, *args):
    return runner.invoke(app, ["invert", *args, "--model", str(model_dir), "--quiet"])


def test_prefix_and_suffix_frame_the_prompt_and_are_recorded(model_dir, tmp_path):
    result = invoke(model_dir, "w5 w6", "--prefix", "w1 w2 ", "--suffix", " w3", "--prompt-length", "2",
                    "--steps", "2", "--out", str(tmp_path), *SEARCH)
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "result.json").read_text())
    assert data["context"]["prefix_text"] == "w1 w2 " and data["context"]["suffix_ids"] == [7]
    assert data["context"]["prefix_ids"] == [5, 6] and data["context"]["chat"] is False


def test_template_is_split_at_its_placeholder(model_dir, tmp_path):
    result = invoke(model_dir, "w5", "--template", "w1 {prompt} w3", "--prompt-length", "2", "--steps", "1",
                    "--out", str(tmp_path), *SEARCH)
    assert result.exit_code == 0, result.output
    context = json.loads((tmp_path / "result.json").read_text())["context"]
    assert context["template"] == "w1 {prompt} w3" and context["prefix_ids"] == [5] and context["suffix_ids"] == [7]


@pytest.mark.parametrize("args, message", [
    (["--template", "no placeholder"], "exactly one {prompt}, found 0"),
    (["--template", "{prompt}{prompt}"], "exactly one {prompt}, found 2"),
    (["--template", "{prompt}", "--prefix", "w1"], "one or the other"),
    (["--system", "be brief"], "needs chat=True"),
    (["--chat"], "has no chat template"),
    (["--allowed", "nonsense"], "allowed must be one of"),
    (["--allowed", "words"], "vocabulary is empty: allowed='words'"),
    (["--universal"], "--universal needs --targets"),
])
def test_bad_context_options_are_one_line_errors(model_dir, tmp_path, args, message):
    result = invoke(model_dir, "w5", "--steps", "1", "--out", str(tmp_path / "out"), *args)
    assert result.exit_code == 2 and message in result.output, result.output
    # The weights' loading bar is transformers' own (it needs the tokenizer to check these).
    lines = [line for line in result.output.splitlines() if line.strip() and "Loading weights" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output
    assert not (tmp_path / "out" / "result.json").exists()


def test_allowed_word_list_and_banned_texts_limit_the_prompt(model_dir, tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("w5\nw9\nw11\nw12\n")
    result = invoke(model_dir, "w20 w21", "--allowed", str(words), "--banned", "w12", "--prompt-length", "3",
                    "--steps", "3", "--out", str(tmp_path / "out"), *SEARCH)
    assert result.exit_code == 0, result.output
    prompt = json.loads((tmp_path / "out" / "result.json").read_text())["prompt_ids"]
    assert set(prompt) <= {9, 13, 15}  # w5, w9, w11; w12 banned


def write_targets(path, texts):
    path.write_text("".join(json.dumps({"id": f"t{i}", "text": text}) + "\n" for i, text in enumerate(texts)))
    return path


def test_targets_file_writes_one_line_each_and_a_rerun_redoes_nothing(model_dir, tmp_path):
    targets = write_targets(tmp_path / "targets.jsonl", ["w5 w6", "w7 w8", "w9"])
    args = ["--targets", str(targets), "--prompt-length", "2", "--steps", "2", "--out", str(tmp_path / "out"), *SEARCH]
    first = invoke(model_dir, *args)
    assert first.exit_code == 0, first.output
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["t0", "t1", "t2"]
    assert "of 3 exact" in first.output and "t2" in first.output
    again = invoke(model_dir, *args)
    assert again.exit_code == 0 and (tmp_path / "out" / "results.jsonl").read_text().splitlines() == lines
    other = invoke(model_dir, *args[:-len(SEARCH)], "--preset", "gcg-fast")
    assert other.exit_code == 2 and "holds another run" in other.output


def test_targets_carry_their_own_context(model_dir, tmp_path):
    targets = tmp_path / "targets.jsonl"
    targets.write_text(json.dumps({"id": "a", "text": "w5", "prefix": "w1 "}) + "\n" +
                       json.dumps({"id": "b", "text": "w6"}) + "\n")
    result = invoke(model_dir, "--targets", str(targets), "--suffix", " w3", "--prompt-length", "2", "--steps", "1",
                    "--out", str(tmp_path / "out"), *SEARCH)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    contexts = {r["key"]: r["result"]["context"] for r in records}
    assert contexts["a"]["prefix_ids"] == [5] and contexts["a"]["suffix_ids"] == [7]
    assert contexts["b"]["prefix_ids"] == [] and contexts["b"]["suffix_ids"] == [7]


def test_universal_finds_one_prompt_for_all_targets(model_dir, tmp_path):
    targets = write_targets(tmp_path / "targets.jsonl", ["w5 w6", "w7"])
    result = invoke(model_dir, "--targets", str(targets), "--universal", "--prompt-length", "2", "--steps", "2",
                    "--out", str(tmp_path / "out"), *SEARCH)
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "out" / "result.json").read_text())
    assert len(data["metrics"]["eval/targets"]) == 2 and len(data["context"]["universal"]) == 2


def run_cli(args, **kwargs):
    command = [sys.executable, "-c", "from softtoken.cli import app; app()", "invert", *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def essentials(path):
    """What a seed determines in each record (not wall times)."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return {r["key"]: (r["result"]["prompt_ids"], r["result"]["output_ids"], r["result"]["steps_run"]) for r in records}


@pytest.mark.skipif(sys.platform != "linux", reason="SIGKILL fault test")
def test_targets_resume_after_sigkill_equals_an_uninterrupted_run(model_dir, tmp_path):
    targets = write_targets(tmp_path / "targets.jsonl", ["w5 w6 w7", "w8 w9 w10", "w11 w12 w13", "w14 w15 w16"])
    common = ["--targets", str(targets), "--model", str(model_dir), "--prompt-length", "3", "--steps", "60", "--quiet",
              *SEARCH]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole = run_cli([*common, "--out", str(tmp_path / "whole")], env=env)
    assert whole.wait(timeout=300) == 0, whole.stderr.read().decode()
    killed = tmp_path / "killed" / "results.jsonl"
    process = run_cli([*common, "--out", str(tmp_path / "killed")], env=env)
    deadline = time.time() + 240
    while time.time() < deadline and not (killed.exists() and killed.read_text().count("\n") >= 1):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = killed.read_text().count("\n")
    assert 1 <= finished < 4, "the kill must land between the first and the last target"
    resumed = run_cli([*common, "--out", str(tmp_path / "killed")], env=env)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()
    assert essentials(killed) == essentials(tmp_path / "whole" / "results.jsonl")
    keys = [json.loads(line)["key"] for line in killed.read_text().splitlines()]
    assert keys == ["t0", "t1", "t2", "t3"]  # nothing redone
