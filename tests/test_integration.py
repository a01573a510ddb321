"""Integration tests on the embedded SmolLM2-135M-Instruct (converted once into the cache)."""

import pytest
import torch

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smol():
    from softtoken.lm.softlm import as_softlm

    return as_softlm(None)


def test_embedded_model_greedily_continues_a_known_prompt(smol):
    prompt = torch.tensor([smol.encode("The capital of France is")])
    output = smol.greedy_generate(prompt, 2)[0].tolist()
    assert smol.decode(output) == " Paris."
    assert smol.prompt_vocab_size == 49152 - 17  # 17 special tokens masked


def test_embedded_model_runs_dlmi_steps(smol):
    from softtoken.methods import DLMI, Budget, Problem, dlmi_paper

    result = DLMI(dlmi_paper()).run(Problem(lm=smol, target_ids=tuple(smol.encode(" Paris.")), prompt_length=4),
                                   Budget(steps=3))
    assert result.steps_run == 3 and all(loss == loss for loss in result.history["loss/target"])
    assert len(result.prompt_ids) == 4 and len(result.output_ids) == 2
