"""Shared fixtures: a tiny randomly initialised Llama with an offline word-level tokenizer."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
import torch

import softtoken

TINY_WORDS = 60
SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]


def build_tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIALS + [f"w{i}" for i in range(TINY_WORDS)])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )


def build_tiny_llama(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        initializer_range=0.3, tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tiny_tokenizer):
    # Two spare embedding rows beyond the tokenizer, as padded vocabularies have.
    return build_tiny_llama(len(tiny_tokenizer) + 2)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, tiny_model, tiny_tokenizer):
    """The tiny Llama and its tokenizer saved as a model directory (what `--model DIR` loads)."""
    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_model.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_lm(tiny_model, tiny_tokenizer):
    from softtoken.lm.softlm import SoftLM

    return SoftLM(tiny_model, tiny_tokenizer)


@pytest.fixture(scope="session")
def planted_target(tiny_lm):
    """plant(plant_seed, prompt_length, target_length) -> the tiny model's greedy continuation of a random
    prompt: a target that some prompt reaches exactly."""

    def plant(plant_seed: int, prompt_length: int, target_length: int) -> tuple[int, ...]:
        generator = torch.Generator().manual_seed(plant_seed)
        prompt = torch.randint(0, tiny_lm.prompt_vocab_size, (prompt_length,), generator=generator)  # (L,)
        return tuple(tiny_lm.greedy_generate(tiny_lm.to_model_ids(prompt).unsqueeze(0), target_length)[0].tolist())

    return plant


SOFTTOKEN_DIR = str(Path(softtoken.__file__).parent)


# Libraries whose deprecated APIs softtoken calls through their own wrappers (nn.Module.__call__, decorators).
PASS_THROUGH = ("/transformers/", "/torch/", "/warnings.py")


def _softtoken_called_it() -> bool:
    """Whether the warning being shown comes from a call softtoken's own code made: the first frame outside
    transformers and torch, walking out from the warning, is softtoken's (a warning that another library,
    e.g. peft, triggers on its own is that library's to fix)."""
    frame = sys._getframe(2)
    while frame is not None and any(part in frame.f_code.co_filename for part in PASS_THROUGH):
        frame = frame.f_back
    return frame is not None and frame.f_code.co_filename.startswith(SOFTTOKEN_DIR)


@pytest.fixture(autouse=True)
def fail_on_deprecations_from_softtoken(monkeypatch):
    """CI fails on a DeprecationWarning or FutureWarning raised by a call from softtoken's own code (such as
    a transformers keyword on its way out); other code's warnings are reported as usual."""

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, (DeprecationWarning, FutureWarning)) and _softtoken_called_it():
            raise AssertionError(f"softtoken code triggered {category.__name__}: {message}")
        warnings._showwarnmsg_impl(warnings.WarningMessage(message, category, filename, lineno, file, line))

    with warnings.catch_warnings():
        warnings.simplefilter("always", DeprecationWarning)
        warnings.simplefilter("always", FutureWarning)
        monkeypatch.setattr(warnings, "showwarning", show)
        yield
