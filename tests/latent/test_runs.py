"""Per-difficulty numbers of an evaluation, from its per-row counts and correctness plus the rows."""

from softtoken.latent.evaluate import EvalResult
from softtoken.latent.options import resolve
from softtoken.latent.runs import by_difficulty, evaluation_record


def result(lengths, correct, latent_steps):
    return EvalResult(n=len(lengths), accuracy=sum(correct) / len(correct), bad_format=0, truncated=0,
                      length_mean=sum(lengths) / len(lengths), length_std=0.0, length_max=max(lengths),
                      latent_steps_mean=sum(latent_steps) / len(latent_steps), lengths=lengths, correct=correct,
                      latent_steps=latent_steps)


ROWS = [{"question": "q", "steps": ["a"] * s, "answer": "1"} for s in (1, 2, 2, 3, 1)]


def test_by_difficulty_groups_rows_by_their_number_of_steps():
    # Five latent rows thinking 1, 2, 4, 3, 1 steps (length = k + 2); the last row is past max_examples.
    scored = result([3, 4, 6, 5], [True, False, True, True], [1, 2, 4, 3])
    table = by_difficulty(scored, ROWS, latent=True)
    assert table == {"1": {"n": 1, "accuracy": 1.0, "length": 3.0, "latent_steps": 1.0},
                     "2": {"n": 2, "accuracy": 0.5, "length": 5.0, "latent_steps": 3.0},
                     "3": {"n": 1, "accuracy": 1.0, "length": 5.0, "latent_steps": 3.0}}
    assert "latent_steps" not in by_difficulty(scored, ROWS, latent=False)["1"]  # CoT lengths are CoT tokens


def test_evaluation_record_holds_the_summary_and_the_table():
    config = resolve("eval", "gsm8k-aug-val/latent_thinking")
    record = evaluation_record(result([3, 4, 6, 5], [True, True, False, True], [1, 2, 4, 3]), ROWS, config, "v")
    assert record["latent_steps"] == 2.5 and record["accuracy"] == 0.75
    assert record["by_steps"]["2"] == {"n": 2, "accuracy": 0.5, "length": 5.0, "latent_steps": 3.0}
