"""Tests for diffusion_lab.scores: the score and EDM's denoiser from an eps-model, denoising score matching and
Langevin dynamics, against the exact answers for data N(0, s^2 I) (tests/exact_gaussian.py)."""

from __future__ import annotations

import math

import pytest
import torch
from exact_gaussian import exact_score, gaussian_eps_model

from diffusion_lab.notation import sigma_range
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.scores import (
    annealed_langevin,
    denoiser_from_eps,
    denoising_score_matching_loss,
    langevin,
    score_from_denoiser,
    score_from_eps,
)
from diffusion_lab.tensors import append_dims

LINEAR, COSINE = NoiseSchedule.from_name("linear", 1000), NoiseSchedule.from_name("cosine", 1000)
S = 0.5


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("schedule", [LINEAR, COSINE], ids=["linear", "cosine"])
def test_score_from_the_exact_eps_model_is_the_exact_score(schedule: NoiseSchedule) -> None:
    score = score_from_eps(gaussian_eps_model(schedule, S), schedule)
    xt = torch.randn(6, 2, generator=_gen(0), dtype=torch.float64)
    for t in (torch.tensor([0, 10, 250, 500, 998, 999]), torch.tensor([0.5, 10.25, 250.0, 499.9, 998.5, 999.0])):
        torch.testing.assert_close(score(xt, t), exact_score(schedule, S, xt, t))
        # -x / (alpha^2 s^2 + sigma^2): points to 0, stronger near the data (small t) than near the noise
        assert bool((score(xt, t) * xt <= 0).all())


def test_denoiser_from_the_exact_eps_model_is_edms_gaussian_denoiser() -> None:
    denoise = denoiser_from_eps(gaussian_eps_model(COSINE, S), COSINE)
    x = torch.randn(5, 3, generator=_gen(1), dtype=torch.float64)
    lo, hi = sigma_range(COSINE)
    for sigma in (lo, 0.3, 1.0, 17.0, hi):
        torch.testing.assert_close(denoise(x, sigma), x * S**2 / (S**2 + sigma**2), rtol=1e-4, atol=1e-6)
        score = score_from_denoiser(denoise)(x, sigma)
        torch.testing.assert_close(score, -x / (S**2 + sigma**2), rtol=1e-4, atol=1e-8)


def test_denoiser_asks_the_model_at_the_fractional_step_and_clips() -> None:
    seen = []

    def model(xt, t):
        seen.append(t)
        return -2 * xt

    denoise = denoiser_from_eps(model, LINEAR, clip=1.0)
    out = denoise(torch.randn(4, 2, generator=_gen(2)) * 3, 2.5)
    assert out.abs().max() <= 1.0
    assert seen[0].dtype == torch.float32 and seen[0].shape == (4,) and 0 < float(seen[0][0]) < 999
    with pytest.raises(ValueError, match="sigma must lie in"):
        denoise(torch.zeros(1, 2), 0.0)


def test_dsm_loss_of_an_eps_model_is_the_eps_loss() -> None:
    """Predicting the noise is score matching: sigma_t^2-weighted DSM with score = -eps_theta / sigma_t is the MSE."""
    def model(xt, t):
        return torch.tanh(xt) + append_dims(t.float(), xt.ndim) / 1000

    x0 = torch.randn(8, 1, 4, 4, generator=_gen(3))
    noise = torch.randn(8, 1, 4, 4, generator=_gen(4))
    t = torch.randint(0, 1000, (8,), generator=_gen(5))
    loss = denoising_score_matching_loss(score_from_eps(model, COSINE), COSINE, x0, t, noise)
    mse = (model(COSINE.add_noise(x0, noise, t), t) - noise).pow(2).mean()
    torch.testing.assert_close(loss, mse, rtol=1e-5, atol=1e-6)


def test_dsm_loss_is_smallest_at_the_exact_score() -> None:
    x0 = torch.randn(20000, 2, generator=_gen(6)) * S
    noise = torch.randn(20000, 2, generator=_gen(7))
    t = torch.randint(0, 1000, (20000,), generator=_gen(8))
    exact = score_from_eps(gaussian_eps_model(LINEAR, S), LINEAR)
    best = denoising_score_matching_loss(exact, LINEAR, x0, t, noise)
    for factor in (0.8, 1.2, -1.0):
        worse = denoising_score_matching_loss(lambda x, t_, f=factor: f * exact(x, t_), LINEAR, x0, t, noise)
        assert worse > best


def test_langevin_samples_a_gaussian_from_its_score() -> None:
    mean, std = 1.5, 0.7
    x = torch.randn(4000, 2, generator=_gen(9)) * 4 - 3  # far from the target

    def score(y):
        return -(y - mean) / std**2

    out = langevin(score, x, step_size=0.01, num_steps=600, generator=_gen(10))
    assert out.mean().item() == pytest.approx(mean, abs=0.03)
    assert out.std().item() == pytest.approx(std, rel=0.03)
    assert torch.equal(out, langevin(score, x, 0.01, 600, generator=_gen(10)))  # same seed, same chain
    assert not torch.equal(out, langevin(score, x, 0.01, 600, generator=_gen(11)))
    assert torch.equal(langevin(score, x, 0.01, 0), x)


def test_annealed_langevin_on_the_course_model_interface() -> None:
    """Song & Ermon's Algorithm 1 with the score of an eps-model seen through EDM's denoiser."""
    score = score_from_denoiser(denoiser_from_eps(gaussian_eps_model(LINEAR, S), LINEAR))
    lo, hi = sigma_range(LINEAR)
    sigmas = torch.exp(torch.linspace(math.log(50.0), math.log(lo), 12)).tolist()
    x = torch.randn(4000, 2, generator=_gen(12)) * sigmas[0]
    out = annealed_langevin(score, x, sigmas, step_size=2e-4, steps_per_level=100, generator=_gen(13))
    assert out.std().item() == pytest.approx(math.sqrt(S**2 + lo**2), rel=0.04)
    assert abs(out.mean().item()) < 0.03


@pytest.mark.parametrize("sigmas", [[], [1.0, 2.0], [1.0, 1.0], [1.0, -0.5]])
def test_annealed_langevin_needs_falling_levels(sigmas) -> None:
    with pytest.raises(ValueError, match="sigma"):
        annealed_langevin(lambda x, s: -x, torch.zeros(2, 2), sigmas, 0.1, 1)


def test_langevin_bad_arguments() -> None:
    with pytest.raises(ValueError, match="step_size must be a positive number"):
        langevin(lambda x: -x, torch.zeros(2), 0.0, 5)
    with pytest.raises(ValueError, match="num_steps must be a non-negative int"):
        langevin(lambda x: -x, torch.zeros(2), 0.1, -1)
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        langevin(lambda x: -x, torch.zeros(2, dtype=torch.long), 0.1, 1)
