"""One notation, executable (chapter 09): the course's steps t, continuous time tau, EDM's sigma, and the
four things a network can predict, each conversion a small function that tests/test_notation.py checks.

The course noises data in discrete steps t = 0..T-1 (chapters 01-05); chapter 09 writes the same process as

    x_t = alpha_t x_0 + sigma_t eps,   alpha_t = sqrt(abar_t),  sigma_t = sqrt(1 - abar_t)

(Kingma et al. 2021; Lu et al. 2022). Careful: DDPM's own alpha_t = 1 - beta_t is ``schedule.alphas``; in
this module, as in chapter 09, alpha is the scale of the signal and sigma the scale of the noise.

    this course (DDPM)               continuous time (MIT 6.S184)            EDM (Karras et al. 2022)
    step t in 0..T-1                 tau = 1 - t / (T - 1) in [0, 1]         sigma = sigma_t / alpha_t
    t = T - 1, almost pure noise     tau = 0, noise                          the schedule's sigma_max
    t = 0, almost clean              tau = 1, data                           the schedule's sigma_min
    x_t = alpha_t x_0 + sigma_t eps  x_tau = alpha_tau x_1 + beta_tau eps    x = x_t / alpha_t = x_0 + sigma eps
    (MIT's beta_tau is sigma_t, the noise's scale: not DDPM's beta_t. MIT's x_1 is the data, the course's x_0.)

Between whole steps, log sigma is interpolated linearly in t (as k-diffusion's ``DiscreteSchedule`` and
diffusers' ``_sigma_to_t`` do), so t <-> sigma is one-to-one on [0, T-1] and a network trained on whole steps
can be asked at any t in between (the course's networks take float t). The same interpolation defines the
continuous rate beta(t) = -d log abar(t) / dt of the VP SDE (``sde.py``): over each step it takes away exactly
what the schedule's step does, the integral of beta from t - 1 to t being -log(1 - betas[t]) ~ betas[t].

What a network can predict, at one x_t (every function takes alpha, sigma as numbers or (B,) tensors):

    eps                 the noise                                     the course's networks predict this
    score               grad_x log p_t(x_t) = -eps / sigma_t          Tweedie's formula (DESIGN's s_theta)
    x0                  (x_t - sigma_t eps) / alpha_t                 EDM's denoiser D(x; sigma)
    velocity u          d x_tau / d tau = alpha'_tau x_0 + beta'_tau eps, time running from noise to data (flow
                        matching, Lipman et al. 2023); for the linear path alpha_tau = tau, beta_tau = 1 - tau,
                        u = x_0 - eps
    v                   alpha_t eps - sigma_t x_0                     Salimans & Ho 2022's v-prediction

Schedule quantities are float64 tensors on the CPU (Apple's MPS has no float64); predictions keep x's dtype.
"""

from __future__ import annotations

import math
import numbers

import torch

from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.tensors import append_dims

Number = float | torch.Tensor


def _float64(value: object, name: str) -> torch.Tensor:
    """A number or a real tensor as a float64 tensor on the CPU."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real | torch.Tensor):
        raise TypeError(f"{name} must be a number or a tensor, got {type(value).__name__}")
    if isinstance(value, torch.Tensor) and (value.is_complex() or value.dtype == torch.bool):
        raise TypeError(f"{name} must hold real numbers, got dtype {value.dtype}")
    if not isinstance(value, torch.Tensor):
        return torch.tensor(float(value), dtype=torch.float64)  # not as_tensor: a Python float would become float32
    return value.detach().to("cpu").double()


def _check_range(x: torch.Tensor, low: float, high: float, name: str, hint: str) -> None:
    """A ValueError unless every value of x lies in [low, high] (NaN fails too)."""
    if not bool(((x >= low) & (x <= high)).all()):
        bad = x[~((x >= low) & (x <= high))].flatten()[0]
        raise ValueError(f"{name} must lie in [{low:.6g}, {high:.6g}] {hint}, got {float(bad):.6g}")


def _sigmas(schedule: NoiseSchedule) -> tuple[torch.Tensor, torch.Tensor]:
    """The schedule's sigmas and their logs, float64 (T,), after checking there are steps to interpolate between."""
    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
    if schedule.T < 2:
        raise ValueError(f"continuous time needs a schedule of at least 2 steps to interpolate, got T={schedule.T}")
    sigmas = schedule_sigmas(schedule)
    return sigmas, sigmas.log()


def coefficient(c: Number, like: torch.Tensor) -> torch.Tensor | float:
    """A number, or a (B,) tensor shaped (B, 1, ...) to broadcast against ``like`` (B, ...) in its dtype and device."""
    if not isinstance(c, torch.Tensor):
        return float(c)
    c = c.to(device=like.device, dtype=like.dtype)
    return append_dims(c, like.ndim) if c.ndim == 1 else c


# ----- the noise-level axis: step t <-> EDM's sigma <-> (alpha_t, sigma_t) <-> continuous time tau -------------


def schedule_sigmas(schedule: NoiseSchedule) -> torch.Tensor:
    """EDM's sigma at every step, sigma_t / alpha_t = sqrt((1 - abar_t) / abar_t): float64 (T,), rising with t."""
    abar = schedule.alpha_bars.detach().to("cpu", torch.float64)
    return ((1 - abar) / abar).sqrt()


def sigma_range(schedule: NoiseSchedule) -> tuple[float, float]:
    """(sigma_min, sigma_max): EDM's sigma at steps 0 and T - 1, the range a sampler may visit."""
    sigmas = schedule_sigmas(schedule)
    return float(sigmas[0]), float(sigmas[-1])


def t_to_sigma(schedule: NoiseSchedule, t: Number) -> torch.Tensor:
    """EDM's sigma at steps t (whole or fractional, in [0, T-1]), log sigma interpolated between steps.
    t: a number or a tensor of any shape; returns float64 of t's shape (at whole steps, the schedule's own)."""
    sigmas, log_sigmas = _sigmas(schedule)
    t = _float64(t, "t")
    _check_range(t, 0, schedule.T - 1, "t", f"(the steps of this schedule, T={schedule.T})")
    low = t.floor().long().clamp(max=schedule.T - 2)
    w = t - low  # how far from step `low` to step `low + 1`
    sigma = ((1 - w) * log_sigmas[low] + w * log_sigmas[low + 1]).exp()
    return torch.where(w == 0, sigmas[low], torch.where(w == 1, sigmas[low + 1], sigma))  # whole steps: exact


def sigma_to_t(schedule: NoiseSchedule, sigma: Number) -> torch.Tensor:
    """The fractional step t where the schedule has EDM noise level sigma: the inverse of ``t_to_sigma``.
    sigma: a number or a tensor of any shape, in ``sigma_range(schedule)``; returns float64 of its shape,
    a whole number exactly where sigma is one of the schedule's own (``schedule_sigmas``)."""
    sigmas, log_sigmas = _sigmas(schedule)
    sigma = _float64(sigma, "sigma")
    _check_range(sigma, float(sigmas[0]) * (1 - 1e-6), float(sigmas[-1]) * (1 + 1e-6), "sigma",  # float32 rounding
                 "(the noise levels this schedule's model was trained on; sigma = 0 is clean data, no step)")
    sigma = sigma.clamp(sigmas[0], sigmas[-1])
    low = (torch.searchsorted(sigmas, sigma.reshape(-1), right=True) - 1).clamp(0, schedule.T - 2)
    low = low.reshape(sigma.shape)
    w = ((sigma.log() - log_sigmas[low]) / (log_sigmas[low + 1] - log_sigmas[low])).clamp(0, 1)
    w = torch.where(sigma == sigmas[low], 0.0, torch.where(sigma == sigmas[low + 1], 1.0, w))  # whole steps: exact
    return low + w


def alpha_sigma_from_edm(sigma: Number) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha_t, sigma_t) = (1, sigma) / sqrt(1 + sigma^2) from EDM's sigma: the variance-preserving scales.
    Returns float64 tensors of sigma's shape."""
    sigma = _float64(sigma, "sigma")
    alpha = (1 + sigma**2).rsqrt()
    return alpha, sigma * alpha


def edm_sigma(alpha: Number, sigma: Number) -> torch.Tensor:
    """EDM's sigma = sigma_t / alpha_t, the noise-to-signal ratio: the inverse of ``alpha_sigma_from_edm``."""
    return _float64(sigma, "sigma") / _float64(alpha, "alpha")


def alpha_sigma(schedule: NoiseSchedule, t: Number) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha_t, sigma_t) = (sqrt(abar_t), sqrt(1 - abar_t)) at steps t, whole or fractional: float64 of t's shape."""
    return alpha_sigma_from_edm(t_to_sigma(schedule, t))


def t_to_tau(schedule: NoiseSchedule, t: Number) -> torch.Tensor:
    """MIT 6.S184's time tau = 1 - t / (T - 1): tau = 0 at step T - 1 (noise), tau = 1 at step 0 (data)."""
    _sigmas(schedule)  # the checks
    t = _float64(t, "t")
    _check_range(t, 0, schedule.T - 1, "t", f"(the steps of this schedule, T={schedule.T})")
    return 1 - t / (schedule.T - 1)


def tau_to_t(schedule: NoiseSchedule, tau: Number) -> torch.Tensor:
    """The course's (fractional) step t = (1 - tau) (T - 1) at MIT 6.S184's time tau in [0, 1]."""
    _sigmas(schedule)
    tau = _float64(tau, "tau")
    _check_range(tau, 0, 1, "tau", "(0 is noise, 1 is data)")
    return (1 - tau) * (schedule.T - 1)


def beta_at(schedule: NoiseSchedule, t: Number) -> torch.Tensor:
    """beta(t) = -d log abar(t) / dt, the VP SDE's rate at step t (Song et al. 2021), per unit of step. Its
    integral over step t, from t - 1 to t, is -log(1 - betas[t]): the SDE's marginals are the schedule's own.
    With log sigma linear between steps, d log abar / dt = -2 sigma_t^2 d log sigma / dt; at a whole step the
    segment below it is used (the one a sampler crosses next). float64 of t's shape."""
    _, log_sigmas = _sigmas(schedule)
    t = _float64(t, "t")
    _check_range(t, 0, schedule.T - 1, "t", f"(the steps of this schedule, T={schedule.T})")
    low = (t.ceil().long() - 1).clamp(0, schedule.T - 2)
    slope = log_sigmas[low + 1] - log_sigmas[low]  # d log sigma / dt on that segment
    _, sigma_t = alpha_sigma(schedule, t)
    return 2 * sigma_t**2 * slope


def path_at_tau(schedule: NoiseSchedule, tau: Number) -> tuple[torch.Tensor, ...]:
    """MIT 6.S184's path x_tau = alpha_tau x_1 + beta_tau eps for this schedule, and its derivatives in tau:
    (alpha_tau, beta_tau, d alpha / d tau, d beta / d tau), float64 of tau's shape. From d log alpha / dt =
    -beta(t) / 2 and dt / dtau = -(T - 1): the signal grows (alpha' > 0) and the noise shrinks as tau runs to 1."""
    t = tau_to_t(schedule, tau)
    alpha, sigma = alpha_sigma(schedule, t)
    rate = beta_at(schedule, t) * (schedule.T - 1) / 2  # d log alpha / d tau = (-beta / 2) (-(T - 1))
    return alpha, sigma, rate * alpha, -rate * alpha**2 / sigma


# ----- the prediction axis: eps <-> score <-> x0 <-> velocity / v, at one x_t --------------------------------


def eps_to_score(eps: torch.Tensor, sigma: Number) -> torch.Tensor:
    """The score grad log p_t(x_t) = -eps / sigma_t (Tweedie; Vincent 2011). eps (B, ...), sigma_t a number or (B,)."""
    return -eps / coefficient(sigma, eps)


def score_to_eps(score: torch.Tensor, sigma: Number) -> torch.Tensor:
    """eps = -sigma_t * score, the inverse of ``eps_to_score``."""
    return -coefficient(sigma, score) * score


def eps_to_x0(xt: torch.Tensor, eps: torch.Tensor, alpha: Number, sigma: Number) -> torch.Tensor:
    """x_0 = (x_t - sigma_t eps) / alpha_t, DDPM eq. 15 in this notation. xt, eps (B, ...)."""
    return (xt - coefficient(sigma, xt) * eps) / coefficient(alpha, xt)


def x0_to_eps(xt: torch.Tensor, x0: torch.Tensor, alpha: Number, sigma: Number) -> torch.Tensor:
    """eps = (x_t - alpha_t x_0) / sigma_t, the noise that takes x_0 to x_t."""
    return (xt - coefficient(alpha, xt) * x0) / coefficient(sigma, xt)


def to_velocity(x0: torch.Tensor, eps: torch.Tensor, d_alpha: Number, d_beta: Number) -> torch.Tensor:
    """The flow-matching velocity u = d x_tau / d tau = alpha'_tau x_0 + beta'_tau eps, time running from noise
    (tau = 0) to data (tau = 1). For the linear path (alpha = tau, beta = 1 - tau) it is x_0 - eps."""
    return coefficient(d_alpha, x0) * x0 + coefficient(d_beta, x0) * eps


def velocity_to_x0_eps(xt: torch.Tensor, u: torch.Tensor, alpha: Number, beta: Number, d_alpha: Number,
                       d_beta: Number) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_0, eps) from x_tau and the velocity u: solves x = alpha x_0 + beta eps, u = alpha' x_0 + beta' eps."""
    a, b, da, db = (coefficient(c, xt) for c in (alpha, beta, d_alpha, d_beta))
    det = a * db - b * da
    if isinstance(det, float) and math.isclose(det, 0.0, abs_tol=1e-12):
        raise ValueError("alpha beta' - beta alpha' = 0: x and u do not determine x_0 and eps on this path")
    return (db * xt - b * u) / det, (a * u - da * xt) / det


def to_v(x0: torch.Tensor, eps: torch.Tensor, alpha: Number, sigma: Number) -> torch.Tensor:
    """Salimans & Ho 2022's v = alpha_t eps - sigma_t x_0 (v-prediction; variance preserving: alpha^2 + sigma^2 = 1)."""
    return coefficient(alpha, x0) * eps - coefficient(sigma, x0) * x0


def v_to_x0_eps(xt: torch.Tensor, v: torch.Tensor, alpha: Number, sigma: Number) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_0, eps) = (alpha_t x_t - sigma_t v, sigma_t x_t + alpha_t v), the inverse of ``to_v`` at x_t."""
    a, s = coefficient(alpha, xt), coefficient(sigma, xt)
    return a * xt - s * v, s * xt + a * v
