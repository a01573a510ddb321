from pathlib import Path

import pytest
import torch

from softtoken.data.reconstruction import (
    ReconstructionConfig,
    _prompt_lines,
    generate_reconstruction_set,
    prompt_recovery_metrics,
)
from softtoken.experiments.spec import load_spec

BENCH = Path(__file__).resolve().parents[2] / "bench"
OPENINGS = BENCH / "natural_openings.txt"


def test_reconstruction_set_targets_are_the_models_greedy_outputs(tiny_lm):
    data = generate_reconstruction_set(tiny_lm, ReconstructionConfig(num_samples=3, prompt_length=4, output_length=5))
    assert data["metadata"]["evaluation_type"] == "prompt_reconstruction"
    allowed = set(tiny_lm.allowed_ids.tolist())
    for sample in data["samples"]:
        prompt = sample["ground_truth_prompt_tokens"]
        assert len(prompt) == 4 and set(prompt) <= allowed
        expected = tiny_lm.greedy_generate(torch.tensor([prompt]), 5)[0].tolist()
        assert sample["token_ids"] == sample["target_output_tokens"] == expected


def test_reconstruction_from_text_file_uses_slices_of_the_text(tmp_path, tiny_lm):
    text = tmp_path / "corpus.txt"
    text.write_text(" ".join(f"w{i}" for i in range(30)))
    data = generate_reconstruction_set(tiny_lm, ReconstructionConfig(source=str(text), num_samples=4,
                                                                     prompt_length=3, output_length=2, seed=1))
    ids = tiny_lm.encode(text.read_text())
    for sample in data["samples"]:
        prompt = sample["ground_truth_prompt_tokens"]
        start = ids.index(prompt[0])
        assert ids[start: start + 3] == prompt


def test_reconstruction_config_rejects_missing_source_file():
    with pytest.raises(ValueError, match="source"):
        ReconstructionConfig(source="/no/such/file.txt")


def test_prompt_recovery_metrics_score_against_ground_truth():
    assert prompt_recovery_metrics([1, 2, 3], [1, 2, 3]) == {
        "prompt/exact_match": 1.0, "prompt/token_accuracy": 1.0, "prompt/lcs_ratio": 1.0}
    scores = prompt_recovery_metrics([2, 3, 9], [1, 2, 3])
    assert scores["prompt/exact_match"] == 0.0
    assert scores["prompt/token_accuracy"] == 0.0
    assert scores["prompt/lcs_ratio"] == pytest.approx(2 / 3)


def _write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_line_mode_takes_the_first_tokens_of_each_line_in_order(tmp_path, tiny_lm):
    source = _write_lines(tmp_path / "openings.txt", [
        "# a header comment, skipped", "w1 w2 w3 w4 w5", "", "w10 w11 w12 w13", "  # indented comment",
        "w20 w21 w22 w23 w24 w25", "w30 w31 w32 w33"])
    cfg = ReconstructionConfig(source=str(source), lines=True, num_samples=3, prompt_length=4, output_length=5)
    data = generate_reconstruction_set(tiny_lm, cfg)
    prompts = [sample["ground_truth_prompt_tokens"] for sample in data["samples"]]
    assert prompts == [tiny_lm.encode(text) for text in ("w1 w2 w3 w4", "w10 w11 w12 w13", "w20 w21 w22 w23")]
    expected = tiny_lm.greedy_generate(torch.tensor(prompts), 5).tolist()
    assert [sample["token_ids"] for sample in data["samples"]] == expected
    assert [sample["target_output_tokens"] for sample in data["samples"]] == expected
    assert [sample["id"] for sample in data["samples"]] == ["line_00", "line_01", "line_02"]


def test_line_mode_ids_take_the_configured_prefix(tmp_path, tiny_lm):
    source = _write_lines(tmp_path / "openings.txt", ["w1 w2", "w3 w4"])
    cfg = ReconstructionConfig(source=str(source), lines=True, id_prefix="natural", num_samples=2,
                               prompt_length=2, output_length=1)
    assert [s["id"] for s in generate_reconstruction_set(tiny_lm, cfg)["samples"]] == ["natural_00", "natural_01"]


def test_line_mode_rejects_a_line_shorter_than_the_prompt(tmp_path, tiny_lm):
    source = _write_lines(tmp_path / "openings.txt", ["# header", "w1 w2 w3", "w4 w5"])
    cfg = ReconstructionConfig(source=str(source), lines=True, num_samples=2, prompt_length=3, output_length=1)
    with pytest.raises(ValueError, match=r"openings.txt' line 3 has 2 tokens, fewer than prompt_length=3$"):
        generate_reconstruction_set(tiny_lm, cfg)


def test_line_mode_rejects_more_samples_than_lines(tmp_path, tiny_lm):
    source = _write_lines(tmp_path / "openings.txt", ["# header", "w1 w2", "", "w3 w4"])
    cfg = ReconstructionConfig(source=str(source), lines=True, num_samples=3, prompt_length=2, output_length=1)
    with pytest.raises(ValueError, match=r"has 2 prompt lines, fewer than num_samples=3$"):
        generate_reconstruction_set(tiny_lm, cfg)


def test_line_mode_needs_a_text_file_source():
    with pytest.raises(ValueError, match="lines needs a text file"):
        ReconstructionConfig(lines=True)


def test_spec_reads_a_relative_reconstruction_source_from_the_spec_directory(tmp_path, monkeypatch):
    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    _write_lines(spec_dir / "openings.txt", ["w1 w2"])
    monkeypatch.chdir(tmp_path)  # the source must not be looked up in the working directory
    spec = load_spec(_write_lines(spec_dir / "s.yaml", [
        "dataset: {reconstruction: {source: openings.txt, lines: true, num_samples: 1, prompt_length: 2}}",
        "methods: [{label: a, method: dlmi}]"]))
    cfg = ReconstructionConfig(**spec.dataset.reconstruction)
    assert Path(cfg.source).resolve() == (spec_dir / "openings.txt").resolve()


def test_natural_bench_specs_read_the_openings_file_line_by_line():
    rows = {"natural.yaml": ["gcg-target", "gcg-combo", "adc", "adc-s10", "adc-s10-polish", "adc-s5-polish",
                             "adc-copy", "gcg-copy", "gcg-copy-screen", "adc-round", "adc-polish-lr40",
                             "adc-polish-lr160", "adc-polish-m09", "adc-polish-share20", "pgd-short", "gcg-fast",
                             "gcg"],
            "natural-long.yaml": ["adc-polish", "adc-polish-w3", "adc-copy", "adc", "adc-s10", "gcg-target",
                                  "gcg-combo", "gcg-fast", "gcg-copy", "gcg-copy-spans16", "gcg-copy-screen"],
            "natural-seeds.yaml": ["adc-polish", "gcg-fast", "adc-polish-m09", "adc-polish-share20",
                                   "gcg-copy-screen"]}
    for name, length, seconds in (("natural.yaml", 10, 180), ("natural-long.yaml", 20, 300),
                                  ("natural-seeds.yaml", 10, 180)):
        spec = load_spec(BENCH / name)
        cfg = ReconstructionConfig(**spec.dataset.reconstruction)
        assert Path(cfg.source).resolve() == OPENINGS.resolve() and cfg.lines and cfg.id_prefix == "natural"
        assert (cfg.num_samples, cfg.prompt_length, cfg.output_length) == (20, length, length)
        assert spec.model is None and spec.prompt_length == length and spec.budget.seconds == seconds
        assert [m.label for m in spec.methods] == rows[name]
        assert spec.seeds == ((1, 2, 3, 4) if name == "natural-seeds.yaml" else (0,))
    assert len(_prompt_lines(OPENINGS.read_text())) >= 24


@pytest.mark.integration
def test_every_natural_opening_has_at_least_20_embedded_model_tokens():
    from transformers import AutoTokenizer

    from softtoken.lm.embedded import embedded_gguf_path, ensure_converted

    tokenizer = AutoTokenizer.from_pretrained(ensure_converted(embedded_gguf_path()))
    counts = {number: len(tokenizer(line, add_special_tokens=False).input_ids)
              for number, line in _prompt_lines(OPENINGS.read_text())}
    assert {number: count for number, count in counts.items() if count < 20} == {}
