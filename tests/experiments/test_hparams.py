from pathlib import Path

from typer.testing import CliRunner

from softtoken.cli_experiments import app
from softtoken.experiments.hparams import hparams_table
from softtoken.experiments.spec import load_spec, parse_spec

SPEC = Path(__file__).resolve().parents[2] / "experiments" / "dlmi-paper.yaml"

# Rows of the reference's table (shared/reference/seeds/dlmi-hyperparameters.md), copied verbatim.
EXPECTED_ROWS = [
    "| batch_size | Batch size for optimization | [8] | [8] | [8] | [8] |",
    "| learning_rate | Learning rate for optimization | [0.1] | [0.03] | [0.1] | [0.1] |",
    "| seed | Random seed for reproducibility | [10, 20] | [10, 20, 30, 40] | [10, 20, 30, 40] | [10, 20, 30] |",
    "| seq_len | Length of the prompt sequence to optimize | [80] | [80] | [80] | [80] |",
    "| soda_reinit_epoch | SODA: embedding reinitialization frequency | [] | [1500] | [] | [] |",
    "| temperature | Temperature for Gumbel-Softmax | [1] | [0.05] | [1] | [100] |",
    ("| model_name | Name of the language model to use | [HuggingFaceTB/SmolLM3-3B-Base] | "
     "[HuggingFaceTB/SmolLM3-3B-Base] | [HuggingFaceTB/SmolLM3-3B-Base] | [HuggingFaceTB/SmolLM3-3B-Base] |"),
]


def test_hparams_table_of_dlmi_paper_spec_reproduces_the_reference_rows():
    table = hparams_table(load_spec(SPEC))
    header = table.splitlines()[0]
    assert header == ("| Hyperparameter | Description | REINFORCE | SODA | DLMI($\\tau=100$)-TF | "
                      "DLMI($\\tau=100$) |")
    for row in EXPECTED_ROWS:
        assert row in table
    teacher_forcing = next(line for line in table.splitlines() if line.startswith("| teacher_forcing "))
    assert teacher_forcing.endswith("| [] | [] | [false] | [true] |")


def test_hparams_table_lists_grid_values_and_marks_unset_names(tmp_path):
    spec = parse_spec({"dataset": "t.txt", "seeds": [1], "methods": [
        {"label": "A", "method": "dlmi", "grid": {"temperature": [1.0, 100.0]}},
        {"label": "B", "method": "dlmi", "options": {"learning_rate": 0.01}}]}, tmp_path)
    lines = hparams_table(spec).splitlines()
    assert "| temperature | Temperature for Gumbel-Softmax | [1, 100] | [] |" in lines
    assert "| learning_rate | Learning rate for optimization | [] | [0.01] |" in lines


def test_cli_hparams_table_prints_the_table():
    result = CliRunner().invoke(app, ["hparams-table", str(SPEC)])
    assert result.exit_code == 0, result.output
    assert EXPECTED_ROWS[0] in result.output
