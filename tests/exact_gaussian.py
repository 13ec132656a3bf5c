"""Exact answers for data x_0 ~ N(0, s^2 I), under any NoiseSchedule (chapter 09's tests).

With x_t = alpha_t x_0 + sigma_t eps, x_t ~ N(0, (alpha_t^2 s^2 + sigma_t^2) I), so

    E[eps | x_t]  = sigma_t x_t / (alpha_t^2 s^2 + sigma_t^2)          the best possible eps-model
    score(x_t)    = -x_t / (alpha_t^2 s^2 + sigma_t^2)
    D(x; sigma)   = x s^2 / (s^2 + sigma^2)                            EDM's denoiser, x = x_0 + sigma eps

and the probability-flow ODE only rescales: x(sigma) = x(sigma_max) sqrt((s^2 + sigma^2) / (s^2 + sigma_max^2)).
"""

from __future__ import annotations

import math

import torch

from diffusion_lab.notation import alpha_sigma, coefficient
from diffusion_lab.schedules import NoiseSchedule


def gaussian_eps_model(schedule: NoiseSchedule, s: float):
    """model(xt, t) -> E[eps | x_t] for data N(0, s^2 I); t (B,) whole or fractional steps."""
    def model(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha, sigma = alpha_sigma(schedule, t)  # float64 (B,)
        a, sg = coefficient(alpha, xt), coefficient(sigma, xt)
        return sg * xt / (a**2 * s**2 + sg**2)

    return model


def exact_score(schedule: NoiseSchedule, s: float, xt: torch.Tensor, t) -> torch.Tensor:
    alpha, sigma = alpha_sigma(schedule, t)
    a, sg = coefficient(alpha, xt), coefficient(sigma, xt)
    return -xt / (a**2 * s**2 + sg**2)


def exact_ode_solution(x_T: torch.Tensor, s: float, sigma_max: float) -> torch.Tensor:
    """Where the probability-flow ODE takes x_T (the course's scaling, at sigma_max): x_0, exactly."""
    x = x_T * math.sqrt(1 + sigma_max**2)  # EDM's scaling
    return x * s / math.sqrt(s**2 + sigma_max**2)


class CountCalls:
    """A model that counts how often it is called (its network evaluations) and records the steps it was asked at."""

    def __init__(self, model):
        self.model, self.calls, self.ts = model, 0, []

    def __call__(self, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.ts.append(t.clone())
        return self.model(xt, t)
