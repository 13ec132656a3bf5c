"""The VP SDE, and sampling by running it backwards (chapter 09): Song et al. 2021 in the course's steps.

DDPM's chain of small noising steps is, in the limit, the variance-preserving SDE (Song et al. 2021, eq. 11)

    dx = f(x, t) dt + g(t) dw,       f(x, t) = -1/2 beta(t) x,     g(t) = sqrt(beta(t))

Time here is the course's step t, continuous in [0, T-1], and beta(t) = -d log abar(t) / dt
(``notation.beta_at``; its integral over step t is -log(1 - betas[t]) ~ betas[t]), so the SDE's marginals are
the schedule's own q(x_t | x_0) at every step: the discrete and the continuous pictures agree. Anderson (1982)
runs it backwards,

    dx = [f(x, t) - g(t)^2 score(x, t)] dt + g(t) dw_bar          from t = T - 1 down to 0

and dropping the noise while halving the score term leaves the probability-flow ODE, with the same marginals
(Song et al. 2021, eq. 13); ``ode.py`` solves it in EDM's sigma.

    vp_drift, vp_diffusion          f(x, t) and g(t)
    reverse_drift                   f - g^2 score, the reverse SDE's drift
    probability_flow_drift          f - g^2 score / 2, the ODE's velocity dx/dt
    reverse_sde                     Euler-Maruyama on the reverse SDE, the samplers' signature (``ode.py``)
    dpmpp_2m_sde                    DPM-Solver++(2M) for the reverse SDE: second order, fresh noise each step
"""

from __future__ import annotations

import math

import torch

from diffusion_lab.notation import Number, alpha_sigma, beta_at, coefficient, eps_to_x0, sigma_to_t
from diffusion_lab.ode import check_sigmas, report_step, start_in_sigma
from diffusion_lab.sampling.loop import Callback, Model
from diffusion_lab.sampling.scheduler import randn
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.tensors import check_float_tensor, check_number


def vp_drift(schedule: NoiseSchedule, x: torch.Tensor, t: Number) -> torch.Tensor:
    """f(x, t) = -1/2 beta(t) x: the pull towards 0 that keeps the variance at 1. x (B, ...); t a number or (B,)."""
    return -0.5 * coefficient(beta_at(schedule, t), x) * x


def vp_diffusion(schedule: NoiseSchedule, t: Number) -> torch.Tensor:
    """g(t) = sqrt(beta(t)): how much noise enters per unit of time. float64 of t's shape."""
    return beta_at(schedule, t).sqrt()


def reverse_drift(schedule: NoiseSchedule, x: torch.Tensor, t: Number, score: torch.Tensor) -> torch.Tensor:
    """f(x, t) - g(t)^2 score(x, t): the reverse SDE's drift (Anderson 1982; Song et al. 2021, eq. 6), in dt."""
    return vp_drift(schedule, x, t) - coefficient(beta_at(schedule, t), x) * score


def probability_flow_drift(schedule: NoiseSchedule, x: torch.Tensor, t: Number, score: torch.Tensor) -> torch.Tensor:
    """f(x, t) - 1/2 g(t)^2 score(x, t) = dx/dt of the probability-flow ODE (Song et al. 2021, eq. 13)."""
    return vp_drift(schedule, x, t) - 0.5 * coefficient(beta_at(schedule, t), x) * score


@torch.no_grad()
def reverse_sde(model: Model, schedule: NoiseSchedule, x_T: torch.Tensor, sigmas: torch.Tensor, *,
                generator: torch.Generator | None = None, callback: Callback | None = None,
                clip: float | None = None) -> torch.Tensor:
    """Euler-Maruyama on the reverse VP SDE, one network evaluation per step, visiting the steps t_i = t(sigma_i):

        x <- x - (f(x, t_i) - g(t_i)^2 score) dt + g(t_i) sqrt(dt) z,     dt = t_i - t_{i+1} > 0, z ~ N(0, I)

    with score = (alpha_t pred_x0 - x) / sigma_t^2 from the (clipped) guess of x_0. The last step, to sigma = 0,
    returns that guess itself, Song et al. 2021's final denoising step. A first-order scheme in a noisy
    equation: it needs many more steps than the ODE solvers of ``ode.py`` for the same quality.

    The samplers' signature (``ode.py``): x_T (B, ...) ~ N(0, I) in the course's scaling, sigmas (K + 1,)
    falling to 0, z drawn from ``generator`` on the CPU, callback as chapter 05's. Returns x_0 (B, ...).
    """
    check_float_tensor(x_T, "x_T")
    sigmas = check_sigmas(sigmas)
    ts = sigma_to_t(schedule, sigmas[:-1]).tolist()
    if clip is not None:
        check_number(clip, "clip", positive=True)
    x = x_T
    for i, t in enumerate(ts):
        alpha, sigma = (float(c) for c in alpha_sigma(schedule, t))
        t_batch = torch.full((x.shape[0],), t, dtype=torch.float32, device=x.device)  # (B,)
        x0 = eps_to_x0(x, model(x, t_batch), alpha, sigma)
        x0 = x0 if clip is None else x0.clamp(-clip, clip)
        if i == len(ts) - 1:
            x = x0  # sigma = 0: the denoising step
        else:
            score = (alpha * x0 - x) / sigma**2  # Tweedie, from the guess of x_0
            dt = t - ts[i + 1]
            z = randn(x.shape, generator, x.dtype, x.device)
            x = x - reverse_drift(schedule, x, t, score) * dt + float(vp_diffusion(schedule, t)) * math.sqrt(dt) * z
        if callback is not None:
            callback(i, t, x, x0)  # chapter 05's callback; x is already in the course's scaling
    return x


@torch.no_grad()
def dpmpp_2m_sde(model: Model, schedule: NoiseSchedule, x_T: torch.Tensor, sigmas: torch.Tensor, *,
                 generator: torch.Generator | None = None, callback: Callback | None = None,
                 clip: float | None = None) -> torch.Tensor:
    """DPM-Solver++(2M) for the reverse SDE (Lu et al. 2022, sec. 5's SDE-DPM-Solver++; k-diffusion's
    ``sample_dpmpp_2m_sde`` with eta = 1 and its midpoint rule; diffusers' ``sde-dpmsolver++``), in EDM's x and
    sigma as ``ode.dpmpp_2m``. With h = log(sigma / sigma_next) and D = D(x; sigma),

        x_next = (sigma_next / sigma) e^-h x + (1 - e^-2h) D + (1 - e^-2h) (D - D_prev) / (2r)
                 + sigma_next sqrt(1 - e^-2h) z,          r = h_prev / h,  z ~ N(0, I)

    It is the ODE solver's step taken twice as far towards D, then noise put back to land on sigma_next's level:
    like DDPM it forgets part of where it came from at every step, so the network's errors do not pile up along
    one path, and like DPM-Solver++(2M) it is second order. The first step has no D_prev (first order); the last,
    to sigma = 0, lands on D. One network evaluation per step; the samplers' signature (``ode.py``), z drawn
    from ``generator`` on the CPU.
    """
    denoise, s, ts, x = start_in_sigma(model, schedule, x_T, sigmas, clip)
    old_denoised, h_last = None, 0.0
    for i, t in enumerate(ts):
        denoised = denoise(x, s[i])
        if s[i + 1] == 0:
            x = denoised
        else:
            h = math.log(s[i] / s[i + 1])
            fresh = -math.expm1(-2 * h)  # 1 - e^-2h: the share of the variance renewed with fresh noise
            x = (s[i + 1] / s[i]) * math.exp(-h) * x + fresh * denoised
            if old_denoised is not None:
                x = x + fresh * (denoised - old_denoised) * h / (2 * h_last)  # 1 / (2r) = h / (2 h_last)
            x = x + s[i + 1] * math.sqrt(fresh) * randn(x.shape, generator, x.dtype, x.device)
            h_last = h
        old_denoised = denoised
        report_step(callback, i, t, x, s[i + 1], denoised)
    return x
