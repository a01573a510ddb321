from softtoken.metrics import exact_match, lcs_length, lcs_ratio, token_accuracy


def test_scores_on_a_shifted_sequence():
    target, generated = [1, 2, 3, 4], [9, 1, 2, 3]
    assert not exact_match(generated, target)
    assert lcs_length(generated, target) == 3
    assert lcs_ratio(generated, target) == 0.75
    assert token_accuracy(generated, target) == 0.0


def test_exact_match_needs_equal_length():
    assert exact_match([1, 2], [1, 2])
    assert not exact_match([1, 2, 3], [1, 2])
    assert token_accuracy([1, 2, 3], [1, 2]) == 1.0
