"""Every bad input is one `error:` line naming the bad value, before any model is loaded and before any file is written.

The cases are the ones a careless user found (issue 15): wrong-typed options and config values, unknown
program keys, a bad --out, ambiguous or empty targets, a bad device, a target the tokenizer cannot spell.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import pytest
from typer.testing import CliRunner

import softtoken
from softtoken.cli import app
from softtoken.configcheck import check_types, describe, matches
from softtoken.engine import OptimizerConfig, Ramp, Stage, StageConfig
from softtoken.engine.config import PositionBias, WeightSchedule
from softtoken.experiments.files import write_json_atomic
from softtoken.experiments.spec import BudgetSpec
from softtoken.methods import (
    PRESETS,
    ADCConfig,
    DLMIConfig,
    GCGConfig,
    PEZConfig,
    PGDConfig,
    ProgramConfig,
    ReinforceConfig,
    RelaxThenSearchConfig,
    SodaConfig,
    get_preset,
)
from softtoken.objectives import Entropy, TargetCE

runner = CliRunner()

PROGRAM_STEPS_TEXT = 'stages:\n  - steps: "two"\n'
DESIGN_OK = "prompt_length: 2\nstages:\n  - steps: 2\n    objectives: [{name: entropy}]\n"
SPEC_BAD_TYPES = """dataset: targets.txt
prompt_length: 2
methods:
  - {label: A, method: dlmi, options: {temperature: nan}}
  - {label: B, method: dlmi, grid: {batch_size: [2.5, 4]}}
"""


@pytest.fixture()
def no_model(monkeypatch):
    """Loading a model fails the test: every check must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the bad input was refused")

    for name in ("softtoken.api.as_softlm", "softtoken.lm.softlm.load_model"):
        monkeypatch.setattr(name, refuse)


@pytest.fixture()
def no_optimisation(monkeypatch):
    """For checks that need the tokenizer: the model may load, but no optimisation may start."""

    def refuse(*args, **kwargs):
        raise AssertionError("optimisation started before the bad input was refused")

    for name in ("softtoken.methods.dlmi.DLMI.run", "softtoken.api.run_program"):
        monkeypatch.setattr(name, refuse)


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# (case id, argv with {m} = model dir and {t} = temp dir, files to create first, expected message fragment)
CLI_CASES = [
    ("option-float-from-text", ["invert", "w5", "-o", "temperature=nan"], {},
     "DLMIConfig.temperature must be float, got 'nan' (str)"),
    ("option-float-nan", ["invert", "w5", "-o", "temperature=.nan"], {},
     "DLMIConfig.temperature must be a finite float, got nan"),
    ("option-int-from-text", ["invert", "w5", "--preset", "gcg", "-o", "search_width=abc"], {},
     "GCGConfig.search_width must be int, got 'abc' (str)"),
    ("option-int-from-float", ["invert", "w5", "-o", "batch_size=2.5"], {},
     "DLMIConfig.batch_size must be int, got 2.5 (float)"),
    ("option-bool-from-text", ["invert", "w5", "-o", 'teacher_forcing="false"'], {},
     "DLMIConfig.teacher_forcing must be bool, got 'false' (str)"),
    ("program-int-from-text", ["invert", "w5", "--config", "{t}/p.yaml"], {"p.yaml": PROGRAM_STEPS_TEXT},
     "StageConfig.steps must be int, got 'two' (str)"),
    ("program-ramp-not-a-mapping", ["invert", "w5", "--config", "{t}/p.yaml"],
     {"p.yaml": "stages:\n  - temperature: 0.5\n"}, "StageConfig.temperature must be a mapping of Ramp fields, got 0.5"),
    ("program-ramp-missing-end", ["invert", "w5", "--config", "{t}/p.yaml"],
     {"p.yaml": "stages:\n  - temperature: {start: 1.0}\n"}, "StageConfig.temperature needs ['end']"),
    ("program-unknown-key", ["invert", "w5", "--config", "{t}/p.yaml"], {"p.yaml": "bogus: 1\nstages:\n  - steps: 2\n"},
     "unknown program config fields ['bogus']; valid: ['eval_every', 'score_hard_samples', 'stages']"),
    ("out-is-a-file", ["invert", "w5", "--out", "{t}/taken"], {"taken": "keep"},
     "--out '{t}/taken' is not a writable directory (File exists)"),
    ("out-below-a-file", ["invert", "w5", "--out", "{t}/taken/run"], {"taken": "keep"},
     "--out '{t}/taken/run' is not a writable directory"),
    ("out-in-proc", ["invert", "w5", "--out", "/proc/x"], {}, "--out '/proc/x' is not a writable directory"),
    ("text-and-target-ids", ["invert", "w5", "--target-ids", "9,10"], {}, "not both: got 'w5' and [9, 10]"),
    ("target-ids-empty", ["invert", "--target-ids", ","], {}, "--target-ids must list at least one integer, got ','"),
    ("device-meta", ["invert", "w5", "--device", "meta"], {}, "got 'meta'"),
    ("design-int-from-text", ["design", "{t}/d.yaml"],
     {"d.yaml": 'prompt_length: 2\nstages:\n  - steps: "two"\n    objectives: [{name: entropy}]\n'},
     "StageConfig.steps must be int, got 'two' (str)"),
    ("design-objective-float-from-text", ["design", "{t}/d.yaml"],
     {"d.yaml": "prompt_length: 2\nstages:\n  - objectives: [{name: entropy, weight: heavy}]\n"},
     "Entropy.weight must be float, got 'heavy' (str)"),
    ("design-text-and-target-ids", ["design", "{t}/d.yaml"], {"d.yaml": DESIGN_OK + "target: w5\ntarget_ids: [9]\n"},
     "not both: got 'w5' and [9]"),
    ("design-out-is-a-file", ["design", "{t}/d.yaml", "--out", "{t}/taken"], {"d.yaml": DESIGN_OK, "taken": "keep"},
     "--out '{t}/taken' is not a writable directory"),
    ("design-device-meta", ["design", "{t}/d.yaml", "--device", "meta"], {"d.yaml": DESIGN_OK}, "got 'meta'"),
]

# Cases that need the tokenizer: the model loads, the optimisation must not start.
CLI_TOKENIZER_CASES = [
    ("target-loses-words", ["invert", "w5 Paris"], {}, "the target does not survive tokenisation: 'w5 Paris'"),
    ("longer-than-the-model", ["invert", "w5", "--prompt-length", "200"], {},
     "prompt (200) + context (0) + target (1) = 201 positions exceed the model's maximum of 128"),
    ("longer-with-its-context", ["invert", "w5", "--prompt-length", "120", "--prefix", "w1 w2 w3 w4 w5 w6 w7 w8 "], {},
     "prompt (120) + context (8) + target (1) = 129 positions exceed the model's maximum of 128"),
    ("design-target-loses-words", ["design", "{t}/d.yaml"], {"d.yaml": DESIGN_OK + "target: Paris w5\n"},
     "the target does not survive tokenisation: 'Paris w5'"),
]


def run_cli(argv: list[str], files: dict[str, str], model_dir: Path, tmp_path: Path):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    args = [arg.format(m=model_dir, t=tmp_path) for arg in argv] + ["--model", str(model_dir)]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out")]
    if args[0] == "invert":
        args += ["--steps", "2", "--quiet"]
    return runner.invoke(app, args)


def assert_one_line_error(result, fragment: str) -> None:
    assert result.exit_code == 2, result.output  # an uncaught exception would exit 1
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.strip().splitlines() if "Loading weights" not in line]  # HF's bar
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0]


@pytest.mark.parametrize("argv, files, fragment", [case[1:] for case in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input_is_one_line_before_any_model_or_file(no_model, model_dir, tmp_path, argv, files, fragment):
    before = files_under(tmp_path) | {name: text.encode() for name, text in files.items()}
    result = run_cli(argv, files, model_dir, tmp_path)
    assert_one_line_error(result, fragment.format(t=tmp_path))
    assert files_under(tmp_path) == before
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, files, fragment", [case[1:] for case in CLI_TOKENIZER_CASES],
                         ids=[c[0] for c in CLI_TOKENIZER_CASES])
def test_cli_target_the_tokenizer_cannot_spell_is_refused_before_optimising(
        no_optimisation, model_dir, tmp_path, argv, files, fragment):
    before = files_under(tmp_path) | {name: text.encode() for name, text in files.items()}
    result = run_cli(argv, files, model_dir, tmp_path)
    assert_one_line_error(result, fragment)
    assert files_under(tmp_path) == before


def test_cli_sweep_spec_lists_every_badly_typed_point(no_model, model_dir, tmp_path):
    (tmp_path / "targets.txt").write_text("w5 w6\n")
    (tmp_path / "spec.yaml").write_text(SPEC_BAD_TYPES)
    before = files_under(tmp_path)
    result = runner.invoke(app, ["sweep", str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "out"), "--dry-run"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert len(errors) == 2, result.stderr
    assert "A: DLMIConfig.temperature must be float, got 'nan' (str)" in errors[0]
    assert "B {'batch_size': 2.5}: DLMIConfig.batch_size must be int, got 2.5 (float)" in errors[1]
    assert files_under(tmp_path) == before


def _stage() -> list[dict[str, Any]]:
    return [{"steps": 1, "objectives": [{"name": "entropy"}]}]


# (case id, a Python call given the model dir, expected message fragment)
API_CASES = [
    ("invert-option-float-from-text", lambda m: softtoken.invert("w5", m, temperature="nan"),
     "DLMIConfig.temperature must be float, got 'nan' (str)"),
    ("invert-steps-from-text", lambda m: softtoken.invert("w5", m, steps="two"),
     "Budget.steps must be int | None, got 'two' (str)"),
    ("invert-text-and-ids", lambda m: softtoken.invert("w5", m, target_ids=[9]), "not both: got 'w5' and [9]"),
    ("invert-empty-ids", lambda m: softtoken.invert(None, m, target_ids=[]), "target is empty"),
    ("invert-ids-not-int", lambda m: softtoken.invert(None, m, target_ids=["9"]), "target ids must be integers, got ['9']"),
    ("invert-device-meta", lambda m: softtoken.invert("w5", m, device="meta"), "got 'meta'"),
    ("invert-program-unknown-key", lambda m: softtoken.invert("w5", m, config={"stages": _stage(), "bogus": 1}),
     "unknown program config fields ['bogus']"),
    ("design-seed-from-text", lambda m: softtoken.design({"prompt_length": 2, "seed": "x", "stages": _stage()}, m),
     "design config: seed must be int, got 'x' (str)"),
    ("design-stage-not-a-mapping", lambda m: softtoken.design({"prompt_length": 2, "stages": [3]}, m),
     "a stage must be a mapping of StageConfig fields and 'objectives', got 3"),
    ("gcg", lambda m: GCGConfig(search_width="abc"), "GCGConfig.search_width must be int, got 'abc' (str)"),
    ("dlmi", lambda m: DLMIConfig(teacher_forcing="false"), "DLMIConfig.teacher_forcing must be bool, got 'false' (str)"),
    ("soda", lambda m: SodaConfig(soda_bias_correction=1), "SodaConfig.soda_bias_correction must be bool, got 1 (int)"),
    ("reinforce", lambda m: ReinforceConfig(batch_size=True), "ReinforceConfig.batch_size must be int, got True (bool)"),
    ("pez", lambda m: PEZConfig(projection=None), "PEZConfig.projection must be str, got None (NoneType)"),
    ("adc", lambda m: ADCConfig(momentum="0.9"), "ADCConfig.momentum must be float, got '0.9' (str)"),
    ("pgd", lambda m: PGDConfig(patience="5"), "PGDConfig.patience must be int, got '5' (str)"),
    ("relax-then-search", lambda m: RelaxThenSearchConfig(relax={}),
     "RelaxThenSearchConfig.relax must be DLMIConfig | ADCConfig, got {} (dict)"),
    ("program", lambda m: ProgramConfig(stages=tuple(_stage()), eval_every=1.5),
     "ProgramConfig.eval_every must be int, got 1.5 (float)"),
    ("program-stages", lambda m: ProgramConfig(stages=(3,)),
     "ProgramConfig.stages must be tuple[Mapping[str, Any], ...], got (3,) (tuple)"),
    ("stage-config-nan", lambda m: StageConfig(lr=math.nan), "StageConfig.lr must be a finite float, got nan"),
    ("stage-config-tuple", lambda m: StageConfig(fixed_positions=[0]),
     "StageConfig.fixed_positions must be tuple[int, ...], got [0] (list)"),
    ("stage-config-optional", lambda m: StageConfig(temperature_lr="0.1"),
     "StageConfig.temperature_lr must be float | None, got '0.1' (str)"),
    ("stage", lambda m: Stage(config=StageConfig(), objectives=[Entropy()]),
     "Stage.objectives must be tuple[Objective, ...], got [Entropy("),
    ("ramp", lambda m: Ramp(start="a", end=1.0), "Ramp.start must be float, got 'a' (str)"),
    ("optimizer", lambda m: OptimizerConfig(beta1=True), "OptimizerConfig.beta1 must be float, got True (bool)"),
    ("position-bias", lambda m: PositionBias(position=0, token_id="5"), "PositionBias.token_id must be int, got '5' (str)"),
    ("weight-schedule", lambda m: WeightSchedule(label="x", ramp=(0, 1)),
     "WeightSchedule.ramp must be Ramp, got (0, 1) (tuple)"),
    ("objective", lambda m: TargetCE(weight="1"), "TargetCE.weight must be float, got '1' (str)"),
    ("objective-inf", lambda m: TargetCE(mellowmax_alpha=math.inf), "TargetCE.mellowmax_alpha must be a finite float"),
    ("budget-spec", lambda m: BudgetSpec(steps="5"), "BudgetSpec.steps must be int | None, got '5' (str)"),
]


@pytest.mark.parametrize("call, fragment", [case[1:] for case in API_CASES], ids=[c[0] for c in API_CASES])
def test_api_bad_input_is_one_line_value_error_before_any_model(no_model, model_dir, tmp_path, call, fragment):
    with pytest.raises(ValueError) as info:
        call(str(model_dir))
    message = str(info.value)
    assert "\n" not in message and fragment in message
    assert files_under(tmp_path) == {}


@pytest.mark.parametrize("command, files, key", [
    (["invert", "w5 w6", "--prompt-length", "2"], {}, "prompt_ids"),
    (["design", "{t}/d.yaml"], {"d.yaml": DESIGN_OK}, "trajectories"),
])
def test_cli_keeps_a_finished_result_when_the_final_write_fails(monkeypatch, model_dir, tmp_path, command, files, key):
    def read_only(path, data):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr("softtoken.cli.write_json_atomic", read_only)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = run_cli(command, files, model_dir, tmp_path)
    assert result.exit_code == 2 and "Traceback" not in result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: could not write") and "Read-only file system" in line, result.stderr
    saved = json.loads(Path(re.search(r"the result is saved in (\S+)$", line).group(1)).read_text())
    assert key in saved
    assert "prompt" in result.stdout  # the summary was printed before the write failed


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_write_json_atomic_gives_the_mode_the_umask_allows(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        path = write_json_atomic(tmp_path / "result.json", {"ok": True})
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == mode


# ----------------------------------------------------------------------------- the generic checker
@pytest.mark.parametrize("hint, value, ok", [
    (bool, True, True), (bool, "false", False), (bool, 1, False),
    (int, 3, True), (int, 2.5, False), (int, True, False), (int, "3", False),
    (float, 1, True), (float, 1.5, True), (float, "nan", False), (float, False, False),
    (str, "a", True), (str, None, False),
    (Literal["a", "b"], "a", True), (Literal["a", "b"], "c", False), (Literal[1], True, False),
    (int | None, None, True), (int | None, 1, True), (int | None, "1", False),
    (Optional[float], None, True),  # noqa: UP045 (typing.Optional is a Union too)
    (tuple[int, ...], (1, 2), True), (tuple[int, ...], (), True), (tuple[int, ...], [1, 2], False),
    (tuple[int, ...], (1, "a"), False), (tuple[int, str], (1, "a"), True), (tuple[int, str], (1,), False),
    (Mapping[str, Any], {"a": 1}, True), (Mapping[str, int], {"a": "1"}, False), (Mapping[str, Any], [("a", 1)], False),
    (Any, object(), True),
])
def test_matches_checks_the_declared_type_exactly(hint, value, ok):
    assert matches(value, hint) is ok


@pytest.mark.parametrize("hint, text", [
    (int, "int"), (int | None, "int | None"), (tuple[int, ...], "tuple[int, ...]"),
    (Literal["a", "b"], "one of ('a', 'b')"), (Mapping[str, Any], "Mapping[str, Any]"),
])
def test_describe_writes_types_as_the_user_reads_them(hint, text):
    assert describe(hint) == text


@dataclass(frozen=True, kw_only=True)
class _Example:
    rate: float = 1.0
    limit: float | None = None

    def __post_init__(self) -> None:
        check_types(self)


@pytest.mark.parametrize("values, message", [
    ({"rate": math.nan}, "_Example.rate must be a finite float, got nan"),
    ({"rate": -math.inf}, "_Example.rate must be a finite float, got -inf"),
    ({"limit": math.inf}, "_Example.limit must be a finite float, got inf"),
    ({"rate": "x" * 200}, "_Example.rate must be float, got '" + "x" * 76 + "... (str)"),
])
def test_check_types_rejects_non_finite_floats_and_shortens_long_values(values, message):
    with pytest.raises(ValueError) as info:
        _Example(**values)
    assert str(info.value) == message


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_carries_correctly_typed_values(name):
    get_preset(name)  # construction runs check_types on the preset's values
