"""Special latent tokens, the one shared prompt prefix, and a tiny offline word tokenizer."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

START, END, CONTINUE, STOP = "<START>", "<END>", "<|CONTINUE|>", "<|STOP|>"
LATENT_TOKENS = (START, END, CONTINUE, STOP)
# One constant for SFT, evaluation and RL prompts (the reference mixed "Question: " and a bare question).
PROMPT_PREFIX = "Question: "
# The answer suffix is tokenised piece by piece, so ":" and the lone space before the digits are
# always their own tokens (the KD target) whatever the tokenizer's merges.
ANSWER_PIECES = (" The answer is", ":", " ")
_PIECE_PATTERN = r" ?[A-Za-z]+|\d|<<|>>|\s|[^A-Za-z\d\s]"


@dataclass(frozen=True)
class TokenIds:
    """Ids the latent model and the data pipeline need."""

    start: int
    end: int
    cont: int
    stop: int
    eos: int
    pad: int
    bos: int | None

    @property
    def latent(self) -> tuple[int, int, int, int]:
        return (self.start, self.end, self.cont, self.stop)


def add_latent_tokens(tokenizer: Any) -> TokenIds:
    """Add the four latent tokens (idempotent) and return the ids; pad falls back to eos."""
    from tokenizers import AddedToken

    missing = [t for t in LATENT_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in missing], special_tokens=True)
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos token; latent training needs one to end answers")
    ids = [tokenizer.convert_tokens_to_ids(t) for t in LATENT_TOKENS]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return TokenIds(*ids, eos=tokenizer.eos_token_id, pad=pad, bos=tokenizer.bos_token_id)


def encode(tokenizer: Any, text: str) -> list[int]:
    return list(_encode_cached(tokenizer, text))


@functools.lru_cache(maxsize=1 << 16)
def _encode_cached(tokenizer: Any, text: str) -> tuple[int, ...]:
    # Teacher and student share prompts and answers; each text is tokenised once.
    return tuple(tokenizer(text, add_special_tokens=False)["input_ids"])


def prompt_ids(tokenizer: Any, ids: TokenIds, question: str) -> list[int]:
    """BOS + PROMPT_PREFIX + question: the same prefix in SFT, evaluation and RL."""
    return ([ids.bos] if ids.bos is not None else []) + encode(tokenizer, PROMPT_PREFIX + question)


def answer_prefix_ids(tokenizer: Any) -> list[int]:
    return [i for piece in ANSWER_PIECES for i in encode(tokenizer, piece)]


def build_word_tokenizer(texts: Iterable[str]) -> Any:
    """A word-level fast tokenizer for tests and CPU runs: words keep their leading space, digits are
    single tokens, and decoding concatenates pieces (so decode(encode(x)) == x)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pieces = set(re.findall(_PIECE_PATTERN, " ".join(texts))) | set("0123456789+-*/=.,:?() ")
    for fixed in (*ANSWER_PIECES, PROMPT_PREFIX):
        pieces |= set(re.findall(_PIECE_PATTERN, fixed))
    pieces |= {"<<", ">>"}
    specials = ["<unk>", "<pad>", "<bos>", "<eos>"]
    vocab = {token: i for i, token in enumerate(specials + sorted(pieces))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(_PIECE_PATTERN), behavior="isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", bos_token="<bos>", eos_token="<eos>"
    )
