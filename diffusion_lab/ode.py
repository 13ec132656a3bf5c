"""Sampling by solving the probability-flow ODE in EDM's sigma (chapter 09): Euler, Heun, DPM-Solver++(2M).

The reverse SDE (``sde.py``) has a deterministic twin with the same marginals, the probability-flow ODE
(Song et al. 2021, eq. 13). Karras et al. 2022 ("EDM") write it for x = x_t / alpha_t = x_0 + sigma eps, with
sigma itself as the time (EDM eq. 3 with sigma(t) = t):

    dx / dsigma = (x - D(x; sigma)) / sigma                  D: the denoiser, ``scores.denoiser_from_eps``

In these coordinates one Euler step is exactly a DDIM step (Song et al. 2021; tests/test_ode.py checks it),
Heun's method adds a correction at the end of each step (EDM Algorithm 1), and DPM-Solver++(2M) (Lu et al.
2022) integrates the linear part exactly and extrapolates D from the step before.

    karras_sigmas        the noise levels to visit: equal steps in sigma^(1/rho), rho = 7      EDM eq. 5
    karras_sigmas_for    those levels for a schedule's model, from min(its sigma_max, 80)       EDM sec. 5
    euler, euler_step    one network evaluation per step                                       = DDIM, eta 0
    heun, heun_step      two per step, one on the last (no second slope at sigma = 0)          EDM Algorithm 1
    dpmpp_2m             one per step, second order from the previous step's D                 Lu et al. 2022

Every sampler here and in ``sde.py`` has one signature, the reference behaviour being k-diffusion's
``sample_euler``, ``sample_heun`` and ``sample_dpmpp_2m``:

    sampler(model, schedule, x_T, sigmas, *, generator=None, callback=None, clip=None) -> x_0

model(xt, t) is the course's eps-model (asked at fractional steps t); x_T ~ N(0, I) and the result are in the
course's scaling, so x_T means what it means for ``sampling.sample``. ``callback(i, t, xt, pred_x0)`` is chapter
05's: after step i, t the (fractional) step it started from, xt the new sample in the course's scaling and
pred_x0 the guess of x_0 at that step, so ``record_trajectory()`` works unchanged.
"""

from __future__ import annotations

import math

import torch

from diffusion_lab.notation import sigma_range, sigma_to_t
from diffusion_lab.sampling.loop import Callback, Model
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.scores import Denoiser, denoiser_from_eps
from diffusion_lab.tensors import check_float_tensor, check_int, check_number


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """EDM eq. 5: n noise levels from sigma_max down to sigma_min, equally spaced in sigma^(1/rho), then 0.

    rho = 7 spends more of the steps at low noise, where the details form (rho = 1 would space sigma evenly).
    For a schedule's model, ``karras_sigmas_for(schedule, n)``. Returns float64 (n + 1,).
    """
    check_int(n, "n (the number of steps)", 1)
    check_number(rho, "rho", positive=True)
    if not 0 < sigma_min <= sigma_max:
        raise ValueError(f"need 0 < sigma_min <= sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    inv_max, inv_min = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    sigmas = (inv_max + ramp * (inv_min - inv_max)) ** rho
    sigmas[-1], sigmas[0] = sigma_min, sigma_max  # the ends exactly: t(sigma_min) is then exactly step 0
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def karras_sigmas_for(schedule: NoiseSchedule, n: int, rho: float = 7.0, sigma_max: float = 80.0) -> torch.Tensor:
    """``karras_sigmas`` for a model trained on ``schedule``: from its largest sigma, but at most ``sigma_max`` = 80
    (EDM sec. 5: by sigma = 80, x_T ~ N(0, I) is already the noised data's distribution), down to its smallest.
    The cosine schedule's own top is sigma = 2e4: starting there spends several steps where nothing happens."""
    lo, hi = sigma_range(schedule)
    return karras_sigmas(n, lo, min(hi, check_number(sigma_max, "sigma_max", positive=True)), rho)


def check_sigmas(sigmas: object) -> torch.Tensor:
    """``sigmas`` as float64 on the CPU if it is a 1-D tensor of noise levels falling strictly to a last 0."""
    hint = "such as karras_sigmas_for(schedule, 10)"
    if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1 or len(sigmas) < 2 or not sigmas.is_floating_point():
        raise ValueError(f"sigmas must be a 1-D float tensor of noise levels, from high to low and ending in 0, {hint}")
    sigmas = sigmas.detach().to("cpu", torch.float64)
    if sigmas[-1] != 0 or not bool((sigmas[:-1] > sigmas[1:]).all()):
        raise ValueError(f"sigmas must fall strictly and end in 0 (clean data), {hint}; got {sigmas.tolist()[:4]}...")
    return sigmas


def start_in_sigma(model: Model, schedule: NoiseSchedule, x_T: torch.Tensor, sigmas: torch.Tensor,
           clip: float | None) -> tuple[Denoiser, list[float], list[float], torch.Tensor]:
    """What every sampler here does first: check its inputs, wrap the model into D, and move x_T (the course's
    scaling, x_T ~ N(0, I) at sigma_max) to EDM's x = x_T / alpha = x_T sqrt(1 + sigma_max^2).
    Returns (D, sigmas as floats, the step t of each sigma but the last 0, x)."""
    check_float_tensor(x_T, "x_T")
    sigmas = check_sigmas(sigmas)
    ts = sigma_to_t(schedule, sigmas[:-1]).tolist()  # checks the range before any network evaluation
    if clip is not None:
        check_number(clip, "clip", positive=True)
    s = sigmas.tolist()
    return denoiser_from_eps(model, schedule, clip), s, ts, x_T * math.sqrt(1 + s[0] ** 2)


def report_step(callback: Callback | None, i: int, t: float, x: torch.Tensor, sigma_next: float,
            denoised: torch.Tensor) -> None:
    """Call chapter 05's ``callback(i, t, xt, pred_x0)`` with x back in the course's scaling, x_t = alpha x."""
    if callback is not None:
        callback(i, t, x / math.sqrt(1 + sigma_next**2), denoised)


def euler_step(denoise: Denoiser, x: torch.Tensor, sigma: float, sigma_next: float,
               denoised: torch.Tensor | None = None) -> torch.Tensor:
    """One Euler step of dx/dsigma = (x - D(x; sigma)) / sigma from sigma down to sigma_next (``denoised``: D(x;
    sigma) if already computed). At sigma_next = 0 it lands on D(x; sigma) itself."""
    denoised = denoise(x, sigma) if denoised is None else denoised
    d = (x - denoised) / sigma  # the slope dx/dsigma at sigma
    return x + (sigma_next - sigma) * d  # sigma falls: sigma_next - sigma < 0


def heun_step(denoise: Denoiser, x: torch.Tensor, sigma: float, sigma_next: float,
              denoised: torch.Tensor | None = None) -> torch.Tensor:
    """One step of Heun's method from sigma to sigma_next, EDM Algorithm 1, lines 3-7:

        d = (x - D(x; sigma)) / sigma,  x' = x + (sigma_next - sigma) d                 Euler's step
        d' = (x' - D(x'; sigma_next)) / sigma_next                                      the slope at its end
        x_next = x + (sigma_next - sigma) (d + d') / 2                                  the average slope

    At sigma_next = 0 there is no slope to take at the end (it divides by 0): the step is Euler's.
    """
    denoised = denoise(x, sigma) if denoised is None else denoised
    d = (x - denoised) / sigma
    x_euler = x + (sigma_next - sigma) * d
    if sigma_next == 0:
        return x_euler
    d_next = (x_euler - denoise(x_euler, sigma_next)) / sigma_next
    return x + (sigma_next - sigma) * (d + d_next) / 2


@torch.no_grad()
def euler(model: Model, schedule: NoiseSchedule, x_T: torch.Tensor, sigmas: torch.Tensor, *,
          generator: torch.Generator | None = None, callback: Callback | None = None,
          clip: float | None = None) -> torch.Tensor:
    """Euler's method on the probability-flow ODE, one network evaluation per step (EDM Algorithm 1 without its
    correction; k-diffusion's ``sample_euler``). On the sigmas of DDIM's timesteps it is DDIM with eta = 0.

    x_T (B, ...) ~ N(0, I); sigmas (K + 1,) falling to 0 (``karras_sigmas_for``); clip: the data's range, or None.
    generator: not used (the ODE draws no noise), there for the shared signature. Returns x_0 (B, ...).
    """
    denoise, s, ts, x = start_in_sigma(model, schedule, x_T, sigmas, clip)
    for i, t in enumerate(ts):
        denoised = denoise(x, s[i])  # (B, ...)
        x = euler_step(denoise, x, s[i], s[i + 1], denoised)
        report_step(callback, i, t, x, s[i + 1], denoised)
    return x


@torch.no_grad()
def heun(model: Model, schedule: NoiseSchedule, x_T: torch.Tensor, sigmas: torch.Tensor, *,
         generator: torch.Generator | None = None, callback: Callback | None = None,
         clip: float | None = None) -> torch.Tensor:
    """Heun's method on the probability-flow ODE, EDM Algorithm 1 (deterministic, no churn; k-diffusion's
    ``sample_heun``): two network evaluations per step and one on the last, 2K - 1 for K steps. Second order:
    closer to the exact ODE solution than Euler at equal steps, its error falling with the square of the step.
    Arguments as ``euler``."""
    denoise, s, ts, x = start_in_sigma(model, schedule, x_T, sigmas, clip)
    for i, t in enumerate(ts):
        denoised = denoise(x, s[i])
        x = heun_step(denoise, x, s[i], s[i + 1], denoised)
        report_step(callback, i, t, x, s[i + 1], denoised)
    return x


@torch.no_grad()
def dpmpp_2m(model: Model, schedule: NoiseSchedule, x_T: torch.Tensor, sigmas: torch.Tensor, *,
             generator: torch.Generator | None = None, callback: Callback | None = None,
             clip: float | None = None) -> torch.Tensor:
    """DPM-Solver++(2M), Lu et al. 2022 (Algorithm 2; k-diffusion's ``sample_dpmpp_2m``): one network evaluation
    per step, second order by reusing the last step's D. With lambda = -log sigma and h = lambda_next - lambda,

        x_next = (sigma_next / sigma) x - (e^-h - 1) D',   D' = (1 + 1/(2r)) D_i - 1/(2r) D_{i-1},  r = h_last / h

    The first step (no D_{i-1} yet) is first order, D' = D_i, which is Euler's (DDIM's) step; the last step,
    to sigma = 0, lands on D_i. Arguments as ``euler``.
    """
    denoise, s, ts, x = start_in_sigma(model, schedule, x_T, sigmas, clip)
    old_denoised = None
    for i, t in enumerate(ts):
        denoised = denoise(x, s[i])
        if s[i + 1] == 0:
            x = denoised  # the limit of the update as sigma_next -> 0
        else:
            h = math.log(s[i] / s[i + 1])  # lambda_next - lambda > 0
            if old_denoised is None:
                d_prime = denoised  # first order: DPM-Solver++(1), DDIM
            else:
                r = math.log(s[i - 1] / s[i]) / h  # h_last / h
                d_prime = (1 + 1 / (2 * r)) * denoised - 1 / (2 * r) * old_denoised
            x = (s[i + 1] / s[i]) * x - math.expm1(-h) * d_prime
        old_denoised = denoised
        report_step(callback, i, t, x, s[i + 1], denoised)
    return x
