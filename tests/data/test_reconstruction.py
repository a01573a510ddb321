import pytest
import torch

from softtoken.data.reconstruction import ReconstructionConfig, generate_reconstruction_set, prompt_recovery_metrics


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
