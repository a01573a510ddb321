"""The CLI end to end on the tiny model: data, SFT with LoRA, resume, eval, GRPO, config dump, errors."""

import json

import pytest
from typer.testing import CliRunner

from softtoken.latent.cli import app

RUNNER = CliRunner()
SFT_TRAIN = ("gsm8k-aug/remove_last_reasoning_step/remove_negative_answers/latent_flat_2/batch_size_4/steps_2/"
             "lr_1e-3/codi_loss_20/calc_smooth_l1/norm_layerwise_std/shift_target_token_one/val_period_2/"
             "save_checkpoint_period_1")
VAL = "gsm8k-aug-val/latent_thinking/max_new_tokens_8/max_examples_4"


def output_json(output: str) -> dict:
    return json.loads(output[output.index("{\n"):])


def invoke(*args):
    result = RUNNER.invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    assert invoke("make-data", "--out", root / "data", "--train-size", 40, "--val-size", 4, "--test-size", 4,
                  "--max-steps", 2).exit_code == 0
    assert invoke("make-tiny-model", "--out", root / "tiny", "--hidden", 32).exit_code == 0
    return root


def test_cli_sft_with_lora_writes_config_checkpoints_and_export(workspace):
    out = workspace / "sft"
    args = ["sft", "--model", workspace / "tiny", "--data", workspace / "data", "--out", out, "--train", SFT_TRAIN,
            "--latent", "recurrent_filter_MLP", "--lora", "llama_target_modules/latent_modules_to_save/r_4/alpha_8",
            "--val", VAL]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["resolved"]["sft"]["latent_max"] == 2 and config["resolved"]["lora"]["r"] == 4
    assert (out / "checkpoints" / "step_000002" / "model.safetensors").is_file()
    assert (out / "final" / "latent.safetensors").is_file()
    again = invoke(*args)  # resumes at the last step: nothing left to train
    assert again.exit_code == 0 and output_json(again.output)["steps"] == 2


def test_cli_eval_and_grpo_run_from_the_export(workspace):
    final = workspace / "sft" / "final"
    if not final.is_dir():
        pytest.skip("needs the SFT export")
    result = invoke("eval", "--model", final, "--data", workspace / "data", "--val",
                    "gsm8k-aug-test/latent_thinking/latent_thought_count_override_2/max_new_tokens_8")
    assert result.exit_code == 0
    assert output_json(result.output)["eval/latent_steps_mean"] == 2  # the override fixes the count
    result = invoke("grpo", "--model", final, "--data", workspace / "data", "--out", workspace / "grpo",
                    "--train", "slice_proportion_50p/batch_size_4/rel_len_penalty_1e-1/rel_len_acc_req_ALL",
                    "--grpo", "lr_1e-4/beta_1e-3/steps_2/eval_steps_2/save_steps_1/save_limit_1/num_gen_2/"
                    "max_completion_length_10", "--val", VAL)
    assert result.exit_code == 0, result.output
    assert len(list((workspace / "grpo" / "checkpoints").glob("step_*"))) == 1  # save_limit honoured


def test_cli_rejects_conflicting_options(workspace):
    result = invoke("sft", "--model", workspace / "tiny", "--data", workspace / "data", "--out", workspace / "bad",
                    "--train", "latent_flat_2/latent_flat_3")
    assert result.exit_code == 2
    assert "already set by" in result.output


def test_cli_appendix_recipe_trains_and_evaluates_with_override(workspace):
    out = workspace / "appendix"
    train = ("gsm8k-aug/remove_last_reasoning_step/remove_negative_answers/latent_flat_2/batch_size_4/steps_2/"
             "codi_loss_20/mean_reasoning_loss_20/intermediate_block_tiny_0_1/calc_smooth_l1/norm_layerwise_std/"
             "lr_8e-4/mask_latent_reasoning_labels/no_decay_some_params/shift_target_token_one/val_period_2/"
             "save_checkpoint_period_2")
    val = "gsm8k-aug-val/latent_thinking/latent_thought_count_override_2/max_new_tokens_8/max_examples_4"
    result = invoke("sft", "--model", workspace / "tiny", "--data", workspace / "data", "--out", out, "--train", train,
                    "--latent", "recurrent_filter_MLP/detach_binary_head_inputs", "--val", val)
    assert result.exit_code == 0, result.output
    summary = output_json(result.output)
    assert summary["eval/latent_steps_mean"] == 2 and summary["eval/length_mean"] == 4


def test_make_data_writes_the_dial_task_and_its_tiny_model_reads_every_word(tmp_path, check_dial_row):
    from transformers import AutoTokenizer

    assert invoke("make-data", "--task", "dial", "--out", tmp_path / "dial", "--train-size", 30, "--val-size", 5,
                  "--test-size", 5, "--max-steps", 4, "--modulus", 7).exit_code == 0
    rows = [json.loads(line) for line in (tmp_path / "dial" / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 30
    for row in rows:
        check_dial_row(row, 7)
    assert invoke("make-tiny-model", "--task", "dial", "--out", tmp_path / "m", "--hidden", 32,
                  "--heads", 2).exit_code == 0
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "m")
    assert tokenizer.unk_token_id not in tokenizer(rows[0]["question"] + "".join(rows[0]["steps"]))["input_ids"]


@pytest.mark.parametrize("args, message", [
    (("--task", "dial", "--max-operand", 3), "unknown task 'dial' fields ['max_operand']"),
    (("--modulus", 7), "unknown task 'arithmetic' fields ['modulus']"),
    (("--task", "clock"), "unknown task 'clock'; available: arithmetic, dial"),
])
def test_make_data_refuses_options_of_another_task_in_one_line(tmp_path, args, message):
    result = invoke("make-data", "--out", tmp_path / "d", *args)
    assert result.exit_code != 0 and message in result.output and not (tmp_path / "d").exists()
