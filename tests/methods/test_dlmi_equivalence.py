"""DLMI as an engine preset reproduces a plain, straightforward DLMI loop (the foundation's algorithm)."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from softtoken.methods import DLMI, Budget, DLMIConfig, Problem, dlmi_paper
from softtoken.relax import Temperature, gumbel_noise, relax


def plain_dlmi_losses(lm, config: DLMIConfig, target: tuple[int, ...], length: int, seed: int, steps: int):
    """Reference loop: Z ~ N(0,1), per-position tau, B Gumbel samples, teacher-forced CE, torch.optim.Adam."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, length, lm.prompt_vocab_size, generator=generator).requires_grad_(True)
    temperature = Temperature(config.temperature, learnable=config.learnable_temperature,
                              num=length if config.decouple_learnable_temperature else 1, generator=generator)
    optimizer = torch.optim.Adam([logits, *temperature.parameters()], lr=config.learning_rate)
    target_t, losses = torch.tensor(target), []
    for _ in range(steps):
        noise = gumbel_noise((config.batch_size, length, lm.prompt_vocab_size), generator=generator,
                             kind=config.gumbel_kind)
        probs = relax(logits.expand(config.batch_size, -1, -1), temperature().view(1, -1, 1), noise=noise,
                      hard=config.stgs_hard, hard_method=config.stgs_hard_method, generator=generator)
        out = lm.teacher_forced_logits(lm.embed_probs(probs), target_t)
        loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), target_t.repeat(config.batch_size))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, logits.detach()[0].argmax(-1)


@pytest.mark.parametrize("options", [
    {},
    {"temperature": 1.0, "learning_rate": 0.5},
    {"stgs_hard": True, "stgs_hard_method": "categorical", "temperature": 2.0, "learnable_temperature": False,
     "decouple_learnable_temperature": False},
])
def test_dlmi_engine_preset_matches_plain_loop(tiny_lm, options):
    config = dataclasses.replace(dlmi_paper(), batch_size=4, eval_every=1000, **options)
    target, steps = (7, 8, 9), 8
    expected, expected_prompt = plain_dlmi_losses(tiny_lm, config, target, 3, seed=5, steps=steps)
    result = DLMI(config).run(Problem(lm=tiny_lm, target_ids=target, prompt_length=3, seed=5), Budget(steps=steps))
    assert result.history["loss/target"] == pytest.approx(expected, rel=1e-5)
    # eval_every > steps: the only prompt scored is argmax of the final Z, so it is the one returned
    assert result.prompt_ids == tiny_lm.to_model_ids(expected_prompt).tolist()
    assert DLMI(config).run(Problem(lm=tiny_lm, target_ids=target, prompt_length=3, seed=5),
                            Budget(steps=steps)).history["loss/target"] == result.history["loss/target"]
