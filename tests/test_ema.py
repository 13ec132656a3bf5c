"""Tests for diffusion_lab.training.ema: the warmed-up decay, the update rule, buffers, state_dict round trip."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from diffusion_lab.training.ema import EMA


def small_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))  # BatchNorm: buffers too


def test_decay_warms_up_then_caps():
    ema = EMA(small_net(), decay=0.99)
    expected = [min(0.99, (1 + n) / (10 + n)) for n in range(2000)]
    got = []
    for _ in range(2000):
        got.append(ema.current_decay())
        ema.updates += 1
    assert got == pytest.approx(expected)
    assert got[0] == pytest.approx(0.1) and got[90] == pytest.approx(0.91)
    assert got[-1] == 0.99 and got == sorted(got)
    assert EMA(small_net(), decay=0.0).current_decay() == 0.0


def test_update_is_lerp_towards_live_weights():
    live = small_net()
    ema = EMA(live, decay=0.999)
    before = {k: v.clone() for k, v in ema.model.state_dict().items()}
    with torch.no_grad():
        for p in live.parameters():
            p.add_(1.0)
    live.train()(torch.randn(8, 3))  # changes BatchNorm's running statistics
    d = ema.current_decay()
    ema.update(live)
    assert ema.updates == 1
    for name, p in live.named_parameters():
        avg = dict(ema.model.named_parameters())[name]
        torch.testing.assert_close(avg, d * before[name] + (1 - d) * p.detach())
        # strictly between the old average and the live weights
        assert (avg - before[name]).abs().max() > 0 and (p - avg).abs().max() > 0
    for name, buf in live.named_buffers():  # buffers are copied, not averaged
        assert torch.equal(dict(ema.model.named_buffers())[name], buf)

    # Repeated updates converge on fixed live weights.
    for _ in range(3000):
        ema.update(live)
    for p, avg in zip(live.parameters(), ema.model.parameters()):
        torch.testing.assert_close(avg, p.detach(), atol=1e-4, rtol=0)


def test_ema_copy_is_frozen_and_separate():
    live = small_net()
    ema = EMA(live)
    assert not ema.model.training
    assert all(not p.requires_grad for p in ema.model.parameters())
    assert all(p.requires_grad for p in live.parameters())
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(live.parameters(), ema.model.parameters()))


def test_state_dict_round_trip():
    live = small_net()
    ema = EMA(live, decay=0.95)
    with torch.no_grad():
        for p in live.parameters():
            p.mul_(2)
    for _ in range(5):
        ema.update(live)
    other = EMA(small_net(seed=1), decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 5 and other.decay == 0.95
    assert other.current_decay() == ema.current_decay()
    sa, sb = ema.model.state_dict(), other.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # the saved state survives torch.save / torch.load(weights_only=True), as in training checkpoints
    buf = io.BytesIO()
    torch.save(ema.state_dict(), buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    assert loaded["updates"] == 5 and loaded["decay"] == 0.95


@pytest.mark.parametrize("decay", [1.0, 1.5, -0.1, math.nan])
def test_bad_decay(decay):
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\)"):
        EMA(small_net(), decay=decay)


def test_update_needs_the_same_architecture():
    ema = EMA(small_net())
    with pytest.raises(ValueError):
        ema.update(nn.Sequential(nn.Linear(3, 4)))
