"""Tests for diffusion_lab.models.mlp: shapes, the time input, gradients, dtypes, a small fit on 2-D
points, and bad input."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from diffusion_lab.models import MLPConfig, MLPDenoiser, count_parameters


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _spiral(n: int) -> torch.Tensor:
    """n points on a swiss-roll-like spiral, (n, 2), roughly unit scale."""
    u = torch.rand(n, generator=_gen(0)) * 3 * math.pi + 1.5 * math.pi
    return torch.stack([u * torch.cos(u), u * torch.sin(u)], dim=1) / 10


def test_default_shape_and_size() -> None:
    model = MLPDenoiser()
    x, t = torch.randn(16, 2, generator=_gen(0)), torch.randint(0, 1000, (16,), generator=_gen(1))
    assert model(x, t).shape == (16, 2)
    assert model.config == MLPConfig()
    assert 200_000 <= count_parameters(model) <= 300_000  # the docstring says 273 k


def test_other_sizes() -> None:
    config = MLPConfig(data_dim=3, hidden_dim=32, num_layers=2, sinusoidal_dim=9)
    assert MLPDenoiser(config)(torch.randn(4, 3), torch.tensor([0, 1, 2, 3])).shape == (4, 3)


def test_timestep_matters_and_gradients_flow() -> None:
    torch.manual_seed(0)
    model = MLPDenoiser()
    x = torch.randn(8, 2, generator=_gen(0))
    out0, out1 = model(x, torch.zeros(8, dtype=torch.long)), model(x, torch.full((8,), 700))
    assert (out0 - out1).abs().max() > 1e-4
    (out0.square().mean() + out1.square().mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_deterministic_and_float64() -> None:
    x, t = torch.randn(8, 2, generator=_gen(0)), torch.randint(0, 1000, (8,), generator=_gen(1))
    torch.manual_seed(1)
    a = MLPDenoiser()
    torch.manual_seed(1)
    b = MLPDenoiser()
    torch.testing.assert_close(a(x, t), b(x, t), rtol=0, atol=0)
    out64 = a.double()(x.double(), t)
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), b(x, t), rtol=1e-4, atol=1e-5)


def test_fits_points_on_a_spiral() -> None:
    torch.manual_seed(0)
    model = MLPDenoiser(MLPConfig(hidden_dim=128, num_layers=3))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    x0 = _spiral(512)
    alpha_bars = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000), 0)  # DDPM's linear schedule
    gen = _gen(1)
    losses = []
    for _ in range(150):
        t = torch.randint(0, 1000, (512,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        ab = alpha_bars[t][:, None]  # (B, 1)
        loss = (model(ab.sqrt() * x0 + (1 - ab).sqrt() * eps, t) - eps).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-20:]) / 20
    assert last < 0.4 * first, (first, last)  # about 0.79 -> 0.22 when written


@pytest.mark.parametrize(
    ("x", "t", "error", "match"),
    [
        (torch.zeros(4, 3), torch.zeros(4), ValueError, "expects input shaped \\(B, 2\\)"),
        (torch.zeros(4), torch.zeros(4), ValueError, "expects input shaped \\(B, 2\\)"),
        (torch.zeros(4, 2, dtype=torch.long), torch.zeros(4), TypeError, "floating-point"),
        (torch.zeros(4, 2, dtype=torch.float64), torch.zeros(4), TypeError, "float64"),
        (torch.zeros(4, 2), torch.zeros(3), ValueError, "t must be a tensor of shape \\(B,\\) = \\(4,\\)"),
        (torch.zeros(4, 2), 7, ValueError, "torch.full"),
    ],
)
def test_bad_input(x, t, error, match) -> None:
    with pytest.raises(error, match=match):
        MLPDenoiser()(x, t)


@pytest.mark.parametrize(
    ("changes", "match"),
    [({"hidden_dim": 0}, "hidden_dim"), ({"num_layers": 2.0}, "num_layers"), ({"sinusoidal_dim": 1}, "sinusoidal_dim")],
)
def test_bad_config(changes: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(MLPConfig(), **changes)
    with pytest.raises(TypeError, match="MLPConfig"):
        MLPDenoiser({"hidden_dim": 8})
