"""Training survives divergence (rollback to the last good checkpoint) and resumes exactly."""

import json

import pytest
import torch

from softtoken.latent.loop import GuardedLoop, LoopConfig


def _setup(tmp_path, steps, **overrides):
    model = torch.nn.Linear(3, 1)
    with torch.no_grad():
        model.weight.fill_(0.5)
        model.bias.zero_()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    config = LoopConfig(steps=steps, lr=0.1, save_every=2, **overrides)
    return model, GuardedLoop(tmp_path, model, optimizer, config)


def _step_fn(model, poison=()):
    def step_fn(step):
        x = torch.tensor([[float(step % 3), 1.0, -1.0]])
        loss = (model(x) - 1.0).pow(2).mean()
        if step in poison:
            loss = loss * float("nan")
        loss.backward()
        return float(loss.detach()), {}
    return step_fn


def test_loop_rolls_back_on_nan_and_finishes(tmp_path):
    model, loop = _setup(tmp_path, steps=8)
    loop.start()
    loop.run(_step_fn(model, poison={5}))
    assert loop.state.step == 8 and loop.state.rollbacks == 1 and loop.state.skipped == [5]
    assert all(torch.isfinite(p).all() for p in model.parameters())
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any("rollback" in r for r in records)


def test_loop_rolls_back_on_loss_spike(tmp_path):
    model, loop = _setup(tmp_path, steps=16, spike_factor=3.0)

    def spiky(step):
        loss, _ = _step_fn(model)(step)
        return (1e6 if step == 13 and loop.state.rollbacks == 0 else 0.1), {}

    loop.start()
    loop.run(spiky)
    assert loop.state.rollbacks == 1 and 13 in loop.state.skipped


def test_loop_gives_up_after_max_rollbacks(tmp_path):
    model, loop = _setup(tmp_path, steps=8, max_rollbacks=2)
    loop.start()
    with pytest.raises(RuntimeError, match="diverged"):
        loop.run(_step_fn(model, poison={1, 2, 3}))


def test_loop_resume_matches_uninterrupted_run(tmp_path):
    straight, loop = _setup(tmp_path / "a", steps=6)
    loop.start()
    loop.run(_step_fn(straight))
    first, loop = _setup(tmp_path / "b", steps=4)
    loop.start()
    loop.run(_step_fn(first))
    resumed, loop = _setup(tmp_path / "b", steps=6)
    loop.start()
    assert loop.state.step == 4
    loop.run(_step_fn(resumed))
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.allclose(a, b)


def test_loop_resume_drops_records_logged_after_the_checkpoint(tmp_path):
    model, loop = _setup(tmp_path, steps=6)
    loop.start()

    def killed_at_5(step):
        if step == 5:
            raise KeyboardInterrupt
        return _step_fn(model)(step)

    with pytest.raises(KeyboardInterrupt):
        loop.run(killed_at_5)
    log = tmp_path / "metrics.jsonl"
    with log.open("a") as handle:
        handle.write('{"step": 6, "lo')  # killed in the middle of a write
    resumed, loop = _setup(tmp_path, steps=6)
    loop.start()
    assert loop.state.step == 4 and [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2, 3, 4]
    loop.run(_step_fn(resumed))
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2, 3, 4, 5, 6]
