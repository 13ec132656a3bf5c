"""Right and wrong answers to the exercises of chapter 05 (sampling)."""

from __future__ import annotations

import math

import torch

from exercise_cases.cases import Cases

# ----- 5.1 posterior_mean(x0, xt, t, alpha_bars) ------------------------------------------------


def _abar_prev(alpha_bars, t):
    return alpha_bars[t - 1] if t > 0 else torch.tensor(1.0, dtype=alpha_bars.dtype)


def posterior_mean(x0, xt, t, alpha_bars):
    abar, abar_prev = alpha_bars[t], _abar_prev(alpha_bars, t)
    beta = 1 - abar / abar_prev
    return (abar_prev.sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - abar_prev) * xt) / (1 - abar)


def posterior_mean_wraps_at_zero(x0, xt, t, alpha_bars):  # alpha_bars[-1] is the LAST entry, not 1
    abar, abar_prev = alpha_bars[t], alpha_bars[t - 1]
    beta = 1 - abar / abar_prev
    return (abar_prev.sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - abar_prev) * xt) / (1 - abar)


def posterior_mean_no_sqrt(x0, xt, t, alpha_bars):
    abar, abar_prev = alpha_bars[t], _abar_prev(alpha_bars, t)
    beta = 1 - abar / abar_prev
    return (abar_prev * beta * x0 + (1 - beta) * (1 - abar_prev) * xt) / (1 - abar)


def posterior_mean_swapped(x0, xt, t, alpha_bars):  # coefficients on the wrong terms
    abar, abar_prev = alpha_bars[t], _abar_prev(alpha_bars, t)
    beta = 1 - abar / abar_prev
    return (abar_prev.sqrt() * beta * xt + (1 - beta).sqrt() * (1 - abar_prev) * x0) / (1 - abar)


# ----- 5.2 ddim_step(xt, eps_pred, abar_t, abar_prev), eta = 0 ----------------------------------


def ddim_step(xt, eps_pred, abar_t, abar_prev):
    x0 = (xt - math.sqrt(1 - abar_t) * eps_pred) / math.sqrt(abar_t)
    return math.sqrt(abar_prev) * x0 + math.sqrt(1 - abar_prev) * eps_pred


def ddim_step_returns_x0(xt, eps_pred, abar_t, abar_prev):  # stops at the guess of x_0
    return (xt - math.sqrt(1 - abar_t) * eps_pred) / math.sqrt(abar_t)


def ddim_step_fresh_noise(xt, eps_pred, abar_t, abar_prev):  # re-noises with new noise: not deterministic
    x0 = (xt - math.sqrt(1 - abar_t) * eps_pred) / math.sqrt(abar_t)
    return math.sqrt(abar_prev) * x0 + math.sqrt(1 - abar_prev) * torch.randn_like(xt)


def ddim_step_no_sqrt(xt, eps_pred, abar_t, abar_prev):
    x0 = (xt - (1 - abar_t) * eps_pred) / abar_t
    return abar_prev * x0 + (1 - abar_prev) * eps_pred


# ----- 5.3 ddim_timesteps(T, K) -----------------------------------------------------------------


def ddim_timesteps(T, K):
    r = T // K
    return [i * r for i in reversed(range(K))]


def ddim_timesteps_tensor(T, K):
    return (torch.arange(K) * (T // K)).flip(0)


def ddim_timesteps_ascending(T, K):
    return [i * (T // K) for i in range(K)]


def ddim_timesteps_linspace(T, K):  # "evenly spaced" from T-1 to 0: a different grid
    return torch.linspace(T - 1, 0, K).round().long().tolist()


def ddim_timesteps_from_T(T, K):  # starts at T, which does not exist
    return list(range(T, 0, -(T // K)))[:K]


CASES: dict[str, Cases] = {
    "5.1": Cases([posterior_mean], [posterior_mean_wraps_at_zero, posterior_mean_no_sqrt, posterior_mean_swapped]),
    "5.2": Cases([ddim_step], [ddim_step_returns_x0, ddim_step_fresh_noise, ddim_step_no_sqrt]),
    "5.3": Cases([ddim_timesteps, ddim_timesteps_tensor],
                 [ddim_timesteps_ascending, ddim_timesteps_linspace, ddim_timesteps_from_T]),
}
