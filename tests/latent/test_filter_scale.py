"""filter_embedding_scale: a latent input starts at the scale of the token embeddings it replaces."""

import pytest
import torch

from softtoken.latent.options import LatentSettings, resolve
from softtoken.latent.tiny import tiny_latent_model


def filter_rms(model) -> float:
    hidden = torch.randn(64, model.causal.config.hidden_size)
    with torch.no_grad():
        return float(model.filter(hidden).pow(2).mean().sqrt())


def embedding_rms(model) -> float:
    return float(model.causal.get_input_embeddings().weight.detach()[: model.base_vocab].pow(2).mean().sqrt())


@pytest.mark.parametrize("mode", ["MLP", "linear_ln"])
def test_the_filter_output_starts_at_the_embedding_rms(tokenizer, mode):
    plain = tiny_latent_model(tokenizer, hidden=32, seed=0, filter_mode=mode)
    scaled = tiny_latent_model(tokenizer, hidden=32, seed=0, filter_mode=mode, filter_embedding_scale=True)
    assert filter_rms(plain) == pytest.approx(1.0, rel=0.05)  # LayerNorm at identity, as the reference
    assert embedding_rms(scaled) < 0.1
    assert filter_rms(scaled) == pytest.approx(embedding_rms(scaled), rel=0.05)
    # Only the LayerNorm's scale differs: the linear layers draw the same weights.
    torch.testing.assert_close(scaled.filter[0].weight, plain.filter[0].weight)


def test_the_flag_parses_and_needs_a_layernorm():
    assert resolve("latent", "recurrent_filter_MLP/filter_embedding_scale").filter_embedding_scale
    assert not resolve("latent", "recurrent_filter_MLP").filter_embedding_scale
    with pytest.raises(ValueError, match="filter_embedding_scale"):
        LatentSettings(filter_mode="none", filter_embedding_scale=True)
