import json

from typer.testing import CliRunner

from softtoken.cli_experiments import app
from softtoken.data.targets import load_targets

runner = CliRunner()


def test_generate_targets_cli_writes_a_readable_reference_file(model_dir, tmp_path):
    out = tmp_path / "targets"
    result = runner.invoke(app, ["generate-targets", "--model", str(model_dir), "--k-min", "1", "--k-max", "25",
                                 "--k-step", "5", "--num-samples", "2", "--max-length", "4", "--noise-factor", "1.0",
                                 "--seed", "42", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["metadata"]["k_values"] == [1, 6, 11, 16, 21] and len(data["samples"]) == 10
    assert all(t.ids is not None for t in load_targets(out).targets)


def test_generate_targets_cli_makes_a_reconstruction_set(model_dir, tmp_path):
    out = tmp_path / "recon.json"
    result = runner.invoke(app, ["generate-targets", "--model", str(model_dir), "--reconstruction", "random",
                                 "--num-samples", "3", "--prompt-length", "2", "--max-length", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    targets = load_targets(out)
    assert len(targets) == 3 and all(len(t.prompt_ids) == 2 and len(t.ids) == 3 for t in targets.targets)


def test_sweep_on_a_reconstruction_set_reports_prompt_recovery(model_dir, write_spec, tmp_path):
    spec = write_spec({
        "model": str(model_dir), "prompt_length": 2, "seeds": [0], "budget": {"steps": 2}, "threads_per_run": 1,
        "dataset": {"reconstruction": {"num_samples": 2, "prompt_length": 2, "output_length": 2}},
        "methods": [{"label": "D", "method": "dlmi", "options": {"batch_size": 2, "eval_every": 1}}],
    })
    run_dir = tmp_path / "run"
    assert runner.invoke(app, ["sweep", str(spec), "--out", str(run_dir), "--quiet"]).exit_code == 0
    record = json.loads((run_dir / "results.jsonl").read_text().splitlines()[0])
    assert {"prompt/exact_match", "prompt/token_accuracy", "prompt/lcs_ratio"} <= set(record["result"]["metrics"])
    result = runner.invoke(app, ["report", str(run_dir), "--no-figures"])
    assert result.exit_code == 0, result.output
    assert "Prompt recovery" in (run_dir / "report.md").read_text()


def test_report_cli_on_a_non_sweep_directory_is_a_one_line_error(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "not a sweep directory" in result.output


def test_sweep_dry_run_counts_without_running(model_dir, targets_file, tiny_spec, write_spec, tmp_path):
    result = runner.invoke(app, ["sweep", str(write_spec(tiny_spec())), "--out", str(tmp_path / "r"), "--dry-run"])
    assert result.exit_code == 0 and "spec is valid: 1 configurations" in result.output
    assert not (tmp_path / "r").exists()


def test_only_on_an_inversion_spec_is_a_one_line_error(model_dir, targets_file, tiny_spec, write_spec, tmp_path):
    result = runner.invoke(app, ["sweep", str(write_spec(tiny_spec())), "--out", str(tmp_path / "r"), "--only", "gcg"])
    assert result.exit_code == 2 and "--only selects entries of a latent spec" in result.output
    assert not (tmp_path / "r").exists()
