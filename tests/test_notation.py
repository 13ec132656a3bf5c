"""Tests for diffusion_lab.notation: chapter 09's table of notations, each conversion checked numerically.

Round trips show each pair of functions are inverses; the checks against independent answers (autograd of a
Gaussian log-density, finite differences along the path, diffusers' sigma-to-t) show that the sign and the
direction of time are right: a flipped sign or tau running the wrong way fails them.
"""

from __future__ import annotations

import math

import pytest
import torch
from exact_gaussian import gaussian_eps_model

from diffusion_lab.notation import (
    alpha_sigma,
    alpha_sigma_from_edm,
    beta_at,
    edm_sigma,
    eps_to_score,
    eps_to_x0,
    path_at_tau,
    schedule_sigmas,
    score_to_eps,
    sigma_range,
    sigma_to_t,
    t_to_sigma,
    t_to_tau,
    tau_to_t,
    to_v,
    to_velocity,
    v_to_x0_eps,
    velocity_to_x0_eps,
    x0_to_eps,
)
from diffusion_lab.sampling import predict_x0
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.tensors import append_dims

SCHEDULES = [NoiseSchedule.from_name("linear", 1000), NoiseSchedule.from_name("cosine", 1000),
             NoiseSchedule.from_name("scaled_linear", 50)]
IDS = ["linear", "cosine", "scaled_linear_50"]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----- the noise-level axis ----------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", SCHEDULES, ids=IDS)
def test_alpha_sigma_at_whole_steps_are_the_schedules(schedule: NoiseSchedule) -> None:
    t = torch.arange(schedule.T)
    alpha, sigma = alpha_sigma(schedule, t)
    abar = schedule.alpha_bars.double()
    torch.testing.assert_close(alpha, abar.sqrt(), rtol=1e-12, atol=0)
    torch.testing.assert_close(sigma, (1 - abar).sqrt(), rtol=1e-10, atol=0)
    torch.testing.assert_close(edm_sigma(alpha, sigma), schedule_sigmas(schedule), rtol=1e-10, atol=0)
    assert alpha.dtype == torch.float64 and alpha.shape == (schedule.T,)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=IDS)
def test_t_sigma_round_trips(schedule: NoiseSchedule) -> None:
    T = schedule.T
    t = torch.cat([torch.tensor([0.0, T - 1.0, 1.0, T - 2.0]), torch.rand(200, generator=_gen(0)) * (T - 1)])
    torch.testing.assert_close(sigma_to_t(schedule, t_to_sigma(schedule, t)), t.double(), rtol=0, atol=1e-9)
    lo, hi = sigma_range(schedule)
    sigma = torch.exp(torch.linspace(math.log(lo), math.log(hi), 300, dtype=torch.float64))
    torch.testing.assert_close(t_to_sigma(schedule, sigma_to_t(schedule, sigma)), sigma, rtol=1e-10, atol=0)
    # the ends land exactly on the first and last steps, and sigma rises with t
    assert float(sigma_to_t(schedule, lo)) == 0.0 and float(sigma_to_t(schedule, hi)) == T - 1
    assert bool((t_to_sigma(schedule, torch.arange(T)).diff() > 0).all())
    assert sigma_to_t(schedule, hi).shape == ()
    assert sigma_to_t(schedule, torch.full((2, 3), hi, dtype=torch.float64)).shape == (2, 3)


def test_sigma_to_t_matches_diffusers() -> None:
    diffusers = pytest.importorskip("diffusers")
    schedule = SCHEDULES[0]
    ref = diffusers.EulerDiscreteScheduler(num_train_timesteps=1000, beta_schedule="linear")
    log_sigmas = schedule_sigmas(schedule).log().numpy()
    lo, hi = sigma_range(schedule)
    sigmas = torch.exp(torch.empty(50, dtype=torch.float64).uniform_(math.log(lo), math.log(hi), generator=_gen(1)))
    theirs = torch.as_tensor(ref._sigma_to_t(sigmas.numpy(), log_sigmas))
    torch.testing.assert_close(sigma_to_t(schedule, sigmas), theirs, rtol=0, atol=1e-9)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=IDS)
def test_continuous_time_runs_from_noise_to_data(schedule: NoiseSchedule) -> None:
    T = schedule.T
    assert float(tau_to_t(schedule, 0.0)) == T - 1 and float(tau_to_t(schedule, 1.0)) == 0
    assert float(t_to_tau(schedule, T - 1)) == 0 and float(t_to_tau(schedule, 0)) == 1
    tau = torch.rand(100, generator=_gen(2), dtype=torch.float64)
    torch.testing.assert_close(t_to_tau(schedule, tau_to_t(schedule, tau)), tau, rtol=0, atol=1e-12)
    alpha, beta, _, _ = path_at_tau(schedule, torch.tensor([0.1, 0.9]))
    assert alpha[1] > alpha[0] and beta[1] < beta[0]  # more signal, less noise as tau runs to the data
    assert schedule.T < 1000 or alpha[1] > 0.5 > alpha[0]  # (50 steps of scaled_linear end far from noise)


@pytest.mark.parametrize("schedule", SCHEDULES[:2], ids=IDS[:2])
def test_alpha_sigma_from_edm_round_trip(schedule: NoiseSchedule) -> None:
    sigma = torch.tensor([1e-3, 0.5, 1.0, 30.0, 2e4], dtype=torch.float64)
    alpha, sigma_t = alpha_sigma_from_edm(sigma)
    torch.testing.assert_close(alpha**2 + sigma_t**2, torch.ones_like(sigma))  # variance preserving
    torch.testing.assert_close(edm_sigma(alpha, sigma_t), sigma, rtol=1e-12, atol=0)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=IDS)
def test_beta_integrates_to_the_schedules_steps(schedule: NoiseSchedule) -> None:
    """The integral of beta(t) over step t is -log(1 - betas[t]): the continuous rate removes what each step does."""
    steps = [1, 2, schedule.T // 2, schedule.T - 2, schedule.T - 1]
    n, abar = 400, schedule.alpha_bars.double()
    for k in steps:
        mid = k - 1 + (torch.arange(n, dtype=torch.float64) + 0.5) / n  # midpoint rule on [k - 1, k]
        integral = float(beta_at(schedule, mid).sum() / n)
        assert integral == pytest.approx(math.log(abar[k - 1] / abar[k]), rel=1e-5), k  # the stored alpha_bars
        # the same up to their float32 rounding: -log(1 - beta_k)
        assert integral == pytest.approx(-math.log(1 - float(schedule.betas.double()[k])), rel=3e-3), k
    assert bool((beta_at(schedule, torch.arange(schedule.T)) > 0).all())


def test_bad_times_and_levels_are_clear_errors() -> None:
    schedule = SCHEDULES[0]
    with pytest.raises(ValueError, match=r"t must lie in \[0, 999\] \(the steps of this schedule, T=1000\), got 1000"):
        t_to_sigma(schedule, 1000)
    with pytest.raises(ValueError, match=r"sigma must lie in .*sigma = 0 is clean data, no step\), got 0"):
        sigma_to_t(schedule, 0.0)
    with pytest.raises(ValueError, match=r"sigma must lie in"):
        sigma_to_t(schedule, float("nan"))
    with pytest.raises(ValueError, match=r"tau must lie in \[0, 1\] \(0 is noise, 1 is data\), got 1.5"):
        tau_to_t(schedule, 1.5)
    with pytest.raises(ValueError, match="at least 2 steps"):
        sigma_to_t(NoiseSchedule.from_betas(torch.tensor([0.5])), 1.0)
    with pytest.raises(TypeError, match="t must be a number or a tensor, got str"):
        t_to_sigma(schedule, "3")


# ----- the prediction axis -----------------------------------------------------------------------------------


def _noised(schedule: NoiseSchedule, shape=(6, 2, 4, 4), seed=3):
    x0 = torch.randn(shape, generator=_gen(seed))
    eps = torch.randn(shape, generator=_gen(seed + 1))
    t = torch.randint(0, schedule.T, (shape[0],), generator=_gen(seed + 2))
    alpha, sigma = alpha_sigma(schedule, t)
    return x0, eps, t, schedule.add_noise(x0, eps, t), alpha, sigma


@pytest.mark.parametrize("schedule", SCHEDULES[:2], ids=IDS[:2])
def test_eps_score_x0_round_trips(schedule: NoiseSchedule) -> None:
    x0, eps, t, xt, alpha, sigma = _noised(schedule)
    torch.testing.assert_close(score_to_eps(eps_to_score(eps, sigma), sigma), eps)
    torch.testing.assert_close(x0_to_eps(xt, eps_to_x0(xt, eps, alpha, sigma), alpha, sigma), eps, rtol=1e-3,
                               atol=1e-3)
    torch.testing.assert_close(eps_to_x0(xt, eps, alpha, sigma), predict_x0(schedule, xt, eps, t), rtol=1e-4,
                               atol=1e-3)  # chapter 05's guess of x_0, the same formula
    torch.testing.assert_close(eps_to_x0(xt, eps, alpha, sigma), x0, rtol=1e-3, atol=5e-3)


def test_score_has_the_right_sign_and_time() -> None:
    """The score of the noised Gaussian, by autograd of its log-density, is -E[eps | x_t] / sigma_t."""
    schedule, s = SCHEDULES[1], 0.5
    xt = torch.randn(5, 3, generator=_gen(4), dtype=torch.float64)
    for t in (torch.full((5,), 100), torch.full((5,), 700.25)):
        alpha, sigma = alpha_sigma(schedule, t)
        var = append_dims(alpha**2 * s**2 + sigma**2, 2)
        x = xt.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad((-0.5 * x**2 / var).sum(), x)
        got = eps_to_score(gaussian_eps_model(schedule, s)(xt, t), sigma)
        torch.testing.assert_close(got, grad)
        flipped = eps_to_score(gaussian_eps_model(schedule, s)(xt, schedule.T - 1 - t), sigma)
        assert not torch.allclose(flipped, grad, rtol=1e-2)  # time running the other way is caught


def test_velocity_is_the_paths_derivative() -> None:
    """to_velocity with path_at_tau's derivatives is d x_tau / d tau (finite differences), for the course's path."""
    schedule = SCHEDULES[1]
    x0 = torch.randn(4, 2, generator=_gen(5), dtype=torch.float64)
    eps = torch.randn(4, 2, generator=_gen(6), dtype=torch.float64)
    for tau in (0.2, 0.55, 0.93):
        alpha, beta, d_alpha, d_beta = path_at_tau(schedule, tau)
        h = 1e-7  # inside one step of the schedule: beta(t) is smooth there

        def x_at(tau_: float) -> torch.Tensor:
            a, b, _, _ = path_at_tau(schedule, tau_)
            return a * x0 + b * eps

        numeric = (x_at(tau + h) - x_at(tau - h)) / (2 * h)
        u = to_velocity(x0, eps, d_alpha, d_beta)
        torch.testing.assert_close(u, numeric, rtol=1e-5, atol=1e-6)
        got_x0, got_eps = velocity_to_x0_eps(alpha * x0 + beta * eps, u, alpha, beta, d_alpha, d_beta)
        torch.testing.assert_close(got_x0, x0)
        torch.testing.assert_close(got_eps, eps)


def test_linear_path_velocity_is_data_minus_noise() -> None:
    x0, eps = torch.randn(3, 2, generator=_gen(7)), torch.randn(3, 2, generator=_gen(8))
    torch.testing.assert_close(to_velocity(x0, eps, 1.0, -1.0), x0 - eps)
    tau = torch.tensor([0.1, 0.5, 0.9])  # one tau per sample, (B,)
    xt = append_dims(tau, 2) * x0 + append_dims(1 - tau, 2) * eps
    got_x0, got_eps = velocity_to_x0_eps(xt, x0 - eps, tau, 1 - tau, torch.ones(3), -torch.ones(3))
    torch.testing.assert_close(got_x0, x0)
    torch.testing.assert_close(got_eps, eps)


def test_v_is_the_angle_derivative_and_inverts() -> None:
    """Salimans & Ho's v: with alpha = cos(phi), sigma = sin(phi), v = d x / d phi."""
    x0, eps = torch.randn(3, 4, generator=_gen(9), dtype=torch.float64), torch.randn(3, 4, generator=_gen(10),
                                                                                    dtype=torch.float64)
    phi, h = 0.7, 1e-6
    numeric = ((math.cos(phi + h) - math.cos(phi - h)) * x0 + (math.sin(phi + h) - math.sin(phi - h)) * eps) / (2 * h)
    v = to_v(x0, eps, math.cos(phi), math.sin(phi))
    torch.testing.assert_close(v, numeric)
    xt = math.cos(phi) * x0 + math.sin(phi) * eps
    got_x0, got_eps = v_to_x0_eps(xt, v, math.cos(phi), math.sin(phi))
    torch.testing.assert_close(got_x0, x0)
    torch.testing.assert_close(got_eps, eps)


def test_predictions_keep_the_inputs_dtype() -> None:
    schedule = SCHEDULES[0]
    x0, eps, t, xt, alpha, sigma = _noised(schedule)
    assert eps_to_score(eps, sigma).dtype == torch.float32
    assert eps_to_x0(xt, eps, alpha, sigma).dtype == torch.float32
    assert to_v(x0.double(), eps.double(), alpha, sigma).dtype == torch.float64
