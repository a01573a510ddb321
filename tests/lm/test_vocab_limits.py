import pytest

from softtoken.lm.token_classes import check_vocabulary_limits
from softtoken.lm.vocab import allowed_token_ids, banned_token_ids, restricted_vocabulary


def ids_of(tokenizer, words):
    return [tokenizer.convert_tokens_to_ids(word) for word in words]


def test_token_classes_on_exact_tokens(tiny_tokenizer):
    ids = ids_of(tiny_tokenizer, ["w1", "w2"])
    assert allowed_token_ids(tiny_tokenizer, ids, "ascii") == ids
    assert allowed_token_ids(tiny_tokenizer, ids, "printable") == ids
    assert allowed_token_ids(tiny_tokenizer, ids, "words") == []  # digits are not letters


class TextsTokenizer:
    """Decodes id i to texts[i]: the token texts byte-level vocabularies produce, without a real tokenizer."""

    def __init__(self, texts):
        self.texts = texts

    def batch_decode(self, batches):
        return ["".join(self.texts[i] for i in ids) for ids in batches]


def test_first_n_keeps_exactly_the_ids_below_n(tiny_tokenizer):
    assert allowed_token_ids(tiny_tokenizer, [0, 3, 4, 9, 12], "first:5") == [0, 3, 4]
    vocab = restricted_vocabulary(tiny_tokenizer, 100, allowed="first:20").tolist()
    assert vocab and max(vocab) < 20 and vocab == restricted_vocabulary(tiny_tokenizer, 20).tolist()


@pytest.mark.parametrize("allowed", ["first:", "first:0", "first:-3", "first:1e4", "first: 8"])
def test_a_malformed_first_n_is_a_one_line_error(allowed):
    with pytest.raises(ValueError, match="first:N needs a positive integer N"):
        check_vocabulary_limits(allowed, ())


def test_decodable_drops_exactly_the_pieces_of_multibyte_characters():
    texts = [" the", "\ufffd", "é", " \ufffd\ufffd", "ab\ufffd", "\n", ""]
    assert allowed_token_ids(TextsTokenizer(texts), list(range(len(texts))), "decodable") == [0, 2, 5]


def test_a_word_list_file_allows_exactly_its_words(tiny_tokenizer, tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("w1\n\nw7\n")
    vocab = restricted_vocabulary(tiny_tokenizer, 100, allowed=str(words))
    assert vocab.tolist() == ids_of(tiny_tokenizer, ["w1", "w7"])


def test_banned_texts_remove_their_tokens(tiny_tokenizer):
    assert banned_token_ids(tiny_tokenizer, ["w3 w4"]) == set(ids_of(tiny_tokenizer, ["w3", "w4"]))
    vocab = restricted_vocabulary(tiny_tokenizer, 100, banned=["w3"]).tolist()
    assert ids_of(tiny_tokenizer, ["w3"])[0] not in vocab and ids_of(tiny_tokenizer, ["w4"])[0] in vocab


@pytest.mark.parametrize("allowed, message", [("words", "empty"), ("no-such-class", "no-such-class")])
def test_bad_limits_are_one_line_errors(tiny_tokenizer, allowed, message):
    with pytest.raises(ValueError, match=message):
        restricted_vocabulary(tiny_tokenizer, 100, allowed=allowed)


def test_an_empty_banned_text_is_refused(tiny_tokenizer):
    with pytest.raises(ValueError, match="non-empty"):
        banned_token_ids(tiny_tokenizer, [""])
