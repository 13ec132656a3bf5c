"""Tests for diffusion_lab.sde: the VP SDE in the course's steps and Euler-Maruyama on its reverse.

The drift and the diffusion are checked against the schedule itself (the variance they make x_t have, by finite
differences of alpha_t and sigma_t), so a wrong sign or time running the wrong way fails; the sampler against
the exact answer for data N(0, s^2 I).
"""

from __future__ import annotations

import pytest
import torch
from exact_gaussian import CountCalls, exact_score, gaussian_eps_model

from diffusion_lab.notation import alpha_sigma, sigma_range
from diffusion_lab.ode import karras_sigmas, karras_sigmas_for
from diffusion_lab.sampling.scheduler import randn
from diffusion_lab.schedules import DIFFUSERS_NAMES, NoiseSchedule
from diffusion_lab.sde import (
    dpmpp_2m_sde,
    probability_flow_drift,
    reverse_drift,
    reverse_sde,
    vp_diffusion,
    vp_drift,
)

LINEAR, COSINE = NoiseSchedule.from_name("linear", 1000), NoiseSchedule.from_name("cosine", 1000)
S = 0.5


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _variance(schedule: NoiseSchedule, t: float) -> float:
    """Var x_t for data N(0, s^2): alpha_t^2 s^2 + sigma_t^2."""
    alpha, sigma = alpha_sigma(schedule, t)
    return float(alpha**2 * S**2 + sigma**2)


@pytest.mark.parametrize("schedule", [LINEAR, COSINE], ids=["linear", "cosine"])
@pytest.mark.parametrize("t", [3.3, 250.5, 700.1, 998.6])
def test_forward_sde_moves_the_variance_as_the_schedule_does(schedule: NoiseSchedule, t: float) -> None:
    """For x ~ N(0, v I): d v / dt = 2 E[x f] / d + g^2 = -beta v + beta; it must match the schedule's own v(t)."""
    h = 1e-3  # inside one step; v is near 1 at the noisy end, so a smaller h would lose digits
    dv_dt = (_variance(schedule, t + h) - _variance(schedule, t - h)) / (2 * h)
    v = _variance(schedule, t)
    x = torch.ones(1, 1, dtype=torch.float64) * v**0.5
    from_sde = 2 * float(vp_drift(schedule, x, t)) * v**0.5 + float(vp_diffusion(schedule, t)) ** 2
    assert from_sde == pytest.approx(dv_dt, rel=1e-5)


@pytest.mark.parametrize("t", [10.5, 500.2, 990.7])
def test_probability_flow_follows_the_marginals(t: float) -> None:
    """With the exact score the ODE's velocity is x * (d v / dt) / (2 v): it rescales x as the variance grows."""
    schedule, h = COSINE, 1e-3
    v = _variance(schedule, t)
    dv_dt = (_variance(schedule, t + h) - _variance(schedule, t - h)) / (2 * h)
    x = torch.randn(5, 2, generator=_gen(0), dtype=torch.float64)
    tt = torch.full((5,), t, dtype=torch.float64)
    velocity = probability_flow_drift(schedule, x, t, exact_score(schedule, S, x, tt))
    torch.testing.assert_close(velocity, x * dv_dt / (2 * v), rtol=1e-5, atol=1e-9)
    # the reverse SDE's drift has twice the score term: f - g^2 score = 2 (ODE velocity) - f
    reverse = reverse_drift(schedule, x, t, exact_score(schedule, S, x, tt))
    torch.testing.assert_close(reverse, 2 * velocity - vp_drift(schedule, x, t))


def test_drift_and_diffusion_per_sample() -> None:
    x = torch.ones(3, 2, 2)
    t = torch.tensor([1.0, 500.0, 999.0])
    f = vp_drift(LINEAR, x, t)
    assert f.shape == (3, 2, 2) and f.dtype == torch.float32 and bool((f < 0).all())
    assert vp_diffusion(LINEAR, t).shape == (3,)
    assert float(vp_diffusion(LINEAR, t)[1]) == pytest.approx(float(LINEAR.betas[500]) ** 0.5, rel=0.02)


@pytest.mark.parametrize("schedule", [LINEAR, COSINE], ids=["linear", "cosine"])
def test_reverse_sde_samples_the_data(schedule: NoiseSchedule) -> None:
    x_T = torch.randn(4000, 2, generator=_gen(1))
    x0 = reverse_sde(gaussian_eps_model(schedule, S), schedule, x_T, karras_sigmas(300, *sigma_range(schedule)),
                     generator=_gen(2))
    assert x0.std().item() == pytest.approx(S, rel=0.04)
    assert abs(x0.mean().item()) < 0.03


def test_reverse_sde_needs_many_steps_where_the_ode_needs_few() -> None:
    x_T = torch.randn(4000, 2, generator=_gen(3))
    few = reverse_sde(gaussian_eps_model(COSINE, S), COSINE, x_T, karras_sigmas(8, *sigma_range(COSINE)),
                      generator=_gen(4))
    assert abs(few.std().item() - S) > 0.05  # 8 Euler-Maruyama steps are far off


def test_same_seed_same_samples() -> None:
    x_T = torch.randn(6, 2, generator=_gen(5))
    sigmas = karras_sigmas(10, *sigma_range(LINEAR))
    model = gaussian_eps_model(LINEAR, S)
    a = reverse_sde(model, LINEAR, x_T, sigmas, generator=_gen(6))
    assert torch.equal(a, reverse_sde(model, LINEAR, x_T, sigmas, generator=_gen(6)))
    assert not torch.equal(a, reverse_sde(model, LINEAR, x_T, sigmas, generator=_gen(7)))
    counted = CountCalls(model)
    reverse_sde(counted, LINEAR, x_T, sigmas, generator=_gen(6))
    assert counted.calls == 10 and not a.requires_grad


def test_clip_and_last_step_is_the_guess() -> None:
    preds = []
    out = reverse_sde(lambda x, t: -3 * x, LINEAR, torch.randn(4, 2, generator=_gen(8)),
                      karras_sigmas(3, *sigma_range(LINEAR)), generator=_gen(9), clip=1.0,
                      callback=lambda i, t, xt, x0: preds.append(x0))
    assert all(p.abs().max() <= 1.0 for p in preds)
    torch.testing.assert_close(out, preds[-1])


# ----- DPM-Solver++(2M) for the reverse SDE ----------------------------------------------------------------------


@pytest.mark.parametrize("schedule", [LINEAR, COSINE], ids=["linear", "cosine"])
def test_dpmpp_2m_sde_samples_the_data_in_fewer_steps(schedule: NoiseSchedule) -> None:
    """At 10 steps its spread is off by under half as much as Euler-Maruyama's; at 50 it is within 4 %."""
    model, x_T = gaussian_eps_model(schedule, S), torch.randn(4000, 2, generator=_gen(10))
    error = {}
    for sampler in (dpmpp_2m_sde, reverse_sde):
        x0 = sampler(model, schedule, x_T, karras_sigmas_for(schedule, 10), generator=_gen(11))
        error[sampler.__name__] = abs(x0.std().item() - S)
    assert error["dpmpp_2m_sde"] < error["reverse_sde"] / 2, error
    x0 = dpmpp_2m_sde(model, schedule, x_T, karras_sigmas_for(schedule, 50), generator=_gen(11))
    assert x0.std().item() == pytest.approx(S, rel=0.04)
    assert abs(x0.mean().item()) < 0.03


@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_dpmpp_2m_sde_matches_diffusers(name: str) -> None:
    """diffusers' DPMSolverMultistepScheduler with algorithm_type="sde-dpmsolver++", given the same noise z at each
    step (ours draws one per step but the last, which lands on D and needs none)."""
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=1000, beta_schedule=DIFFUSERS_NAMES[name], algorithm_type="sde-dpmsolver++",
        solver_order=2, solver_type="midpoint", use_karras_sigmas=True, final_sigmas_type="zero",
        lower_order_final=True)
    schedule = NoiseSchedule.from_name(name, 1000)
    ref.alphas_cumprod = schedule.alpha_bars.clone()
    ref.set_timesteps(8)
    ref.set_begin_index(0)
    ours = karras_sigmas(8, *sigma_range(schedule))

    def model(x, t):  # diffusers rounds the timesteps to whole steps: a model that ignores t
        return 0.9 * x + 0.1 * torch.sin(3 * x)

    x_T = torch.randn(3, 1, 6, 6, generator=_gen(12))
    drawn = _gen(13)
    zs = [randn(x_T.shape, drawn, x_T.dtype, x_T.device) for _ in range(7)] + [torch.zeros_like(x_T)]
    want = x_T
    for t, z in zip(ref.timesteps, zs):
        want = ref.step(model(want, t.float().expand(3)), t, want, variance_noise=z).prev_sample
    got = dpmpp_2m_sde(model, schedule, x_T, ours, generator=_gen(13))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=5e-4)


def test_dpmpp_2m_sde_is_random_where_its_ode_twin_is_not() -> None:
    model, x_T = gaussian_eps_model(LINEAR, S), torch.randn(6, 2, generator=_gen(14))
    sigmas = karras_sigmas(10, *sigma_range(LINEAR))
    a = dpmpp_2m_sde(model, LINEAR, x_T, sigmas, generator=_gen(15))
    assert torch.equal(a, dpmpp_2m_sde(model, LINEAR, x_T, sigmas, generator=_gen(15)))
    assert not torch.equal(a, dpmpp_2m_sde(model, LINEAR, x_T, sigmas, generator=_gen(16)))
