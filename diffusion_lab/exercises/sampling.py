"""Checks for chapter 05: the posterior mean, a deterministic DDIM step, the timesteps of a short sampler."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from diffusion_lab.exercises.core import ExerciseFailed, _call, _compare, _gen, _passed
from diffusion_lab.sampling import DDIMScheduler, ddim_step, posterior_mean_variance
from diffusion_lab.schedules import NoiseSchedule


def check_posterior_mean(fn: Callable[..., torch.Tensor]) -> None:
    """5.1: posterior_mean(x0, xt, t, alpha_bars) = mean of q(x_{t-1} | x_t, x_0) (DDPM eq. 7), t an int."""
    schedule = NoiseSchedule.from_name("linear", T=1000)
    gen = _gen(5)
    x0 = torch.randn(3, 1, 4, 4, generator=gen)
    xt = torch.randn(3, 1, 4, 4, generator=gen)
    for t in (999, 500, 20, 1, 0):  # t = 0 needs alpha_bar_{-1} = 1
        got = _call("5.1", fn, x0, xt, t, schedule.alpha_bars.clone())
        want, _ = posterior_mean_variance(schedule, x0, xt, t)
        hint = " (at t = 0 there is no alpha_bars[-1]: use 1, no noise has been added yet)" if t == 0 else ""
        abar = schedule.alpha_bars[t].double()
        abar_prev = schedule.alpha_bars[t - 1].double() if t > 0 else torch.ones((), dtype=torch.float64)
        beta = 1 - abar / abar_prev
        _compare("5.1", got, want, f"the mean at t = {t}{hint}", atol=1e-5, mistakes={
            "the coefficients take square roots: sqrt(alpha_bar_{t-1}) beta_t and sqrt(alpha_t) (1 - alpha_bar_{t-1})":
                (abar_prev * beta * x0 + (1 - beta) * (1 - abar_prev) * xt) / (1 - abar),
            "the two coefficients are swapped: sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) multiplies x0":
                (abar_prev.sqrt() * beta * xt + (1 - beta).sqrt() * (1 - abar_prev) * x0) / (1 - abar)})
    _passed("5.1", "the posterior mean mixes the guess of x_0 and the current x_t, with weights set by the schedule.")


def check_ddim_step(fn: Callable[..., torch.Tensor]) -> None:
    """5.2: ddim_step(xt, eps_pred, abar_t, abar_prev) with eta = 0: x_{t_prev} from Song et al. eq. 12."""
    schedule = NoiseSchedule.from_name("cosine", T=1000)
    gen = _gen(6)
    xt = torch.randn(2, 1, 5, 5, generator=gen)
    eps_pred = torch.randn(2, 1, 5, 5, generator=gen)
    for t, t_prev in ((999, 899), (500, 480), (40, 0)):
        abar_t, abar_prev = float(schedule.alpha_bars[t]), float(schedule.alpha_bars[t_prev])
        got = _call("5.2", fn, xt, eps_pred, abar_t, abar_prev)
        want = ddim_step(schedule, xt, eps_pred, t, t_prev).prev_sample
        x0_pred = (xt - (1 - abar_t) ** 0.5 * eps_pred) / abar_t**0.5
        if isinstance(got, torch.Tensor) and not torch.equal(got, _call("5.2", fn, xt, eps_pred, abar_t, abar_prev)):
            raise ExerciseFailed("5.2", "two calls with the same inputs gave different results: with eta = 0 no "
                                        "fresh noise is drawn; re-noise the guess of x_0 with eps_pred itself")
        _compare("5.2", got, want, f"x_prev for the step {t} -> {t_prev}", atol=1e-4, mistakes={
            "that is the guess of x_0; go on to x_prev = sqrt(abar_prev) x0_pred + sqrt(1 - abar_prev) eps_pred":
                x0_pred,
            "both formulas take square roots of the alpha-bars": abar_prev * (xt - (1 - abar_t) * eps_pred) / abar_t
                + (1 - abar_prev) * eps_pred})
    _passed("5.2", "no noise is added: the same x_T always gives the same image.")


def check_ddim_timesteps(fn: Callable[[int, int], Any]) -> None:
    """5.3: ddim_timesteps(T, K): the K steps a K-step sampler visits, noisiest first (diffusers' 'leading')."""
    for T, K in ((1000, 10), (1000, 50), (1000, 3), (10, 10), (100, 7)):
        got = _call("5.3", fn, T, K)
        if isinstance(got, torch.Tensor):
            got = got.tolist()
        if not isinstance(got, (list, tuple)):
            raise ExerciseFailed("5.3", f"return a list of ints (or an int64 tensor), got {type(got).__name__}")
        scheduler = DDIMScheduler(NoiseSchedule.from_name("linear", T=T))
        scheduler.set_timesteps(K)
        want = scheduler.timesteps.tolist()
        if list(got) == want[::-1]:
            raise ExerciseFailed("5.3", f"T={T}, K={K}: the order is reversed; the sampler starts at the noisiest step")
        if list(got) != want:
            raise ExerciseFailed("5.3", f"T={T}, K={K}: you gave {list(got)[:6]}{'...' if len(got) > 6 else ''}, "
                                        f"expected {want[:6]}{'...' if K > 6 else ''} ({K} steps, r = T // K apart, "
                                        f"ending at 0)")
    _passed("5.3", "K evenly spaced steps, r = T // K apart, from (K - 1) r down to 0.")


CHECKS: dict[str, Callable[[Callable[..., Any]], None]] = {
    "5.1": check_posterior_mean,
    "5.2": check_ddim_step,
    "5.3": check_ddim_timesteps,
}
