"""Scores from a noise predictor, denoising score matching and Langevin dynamics (chapter 09).

The score of the noised data, grad_x log p_t(x), points to where data are more likely. Tweedie's formula ties
it to the noise a denoiser predicts (Vincent 2011; Song et al. 2021, sec. 3):

    score(x_t, t) = -E[eps | x_t] / sigma_t  ~  -eps_theta(x_t, t) / sigma_t,      sigma_t = sqrt(1 - abar_t)

so every noise predictor of chapters 04-08 is already a score model, with no retraining. The same network
seen in EDM's scaling x = x_t / alpha_t (Karras et al. 2022, Table 1, the VP column) is a denoiser:

    D(x; sigma) = x - sigma * eps_theta(x / sqrt(1 + sigma^2), t(sigma))            (x = x_0 + sigma eps)

    score_from_eps                 score(xt, t) from model(xt, t), the course's scaling
    denoiser_from_eps              D(x, sigma), EDM's scaling; what the samplers of ode.py call
    score_from_denoiser            score(x, sigma) = (D(x; sigma) - x) / sigma^2, EDM's scaling (EDM eq. 3)
    denoising_score_matching_loss  Vincent 2011 with Song & Ermon 2019's weight sigma_t^2: the eps loss again
    langevin, annealed_langevin    sampling from a score alone (Song & Ermon 2019, Algorithm 1)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from diffusion_lab.notation import alpha_sigma, coefficient, eps_to_score, sigma_to_t
from diffusion_lab.sampling.loop import Model
from diffusion_lab.sampling.scheduler import randn
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.tensors import check_float_tensor, check_int, check_number

# score(xt, t) -> grad log p_t(xt): xt (B, ...), t (B,) steps (whole or fractional), the course's scaling
ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# D(x, sigma) -> guess of x_0: x (B, ...) in EDM's scaling x = x_t / alpha_t, one noise level sigma for the batch
Denoiser = Callable[[torch.Tensor, float], torch.Tensor]


def score_from_eps(model: Model, schedule: NoiseSchedule) -> ScoreFn:
    """Wrap an eps-model ``model(xt, t)`` into ``score(xt, t) = -model(xt, t) / sigma_t`` (same arguments)."""
    def score(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        _, sigma = alpha_sigma(schedule, t)  # float64 (B,): sqrt(1 - abar_t), also between whole steps
        return eps_to_score(model(xt, t), sigma)

    return score


def denoiser_from_eps(model: Model, schedule: NoiseSchedule, clip: float | None = None) -> Denoiser:
    """Wrap an eps-model into EDM's denoiser D(x; sigma) = x - sigma * eps(x alpha, t(sigma)) (Karras et al. 2022,
    Table 1, VP column; k-diffusion's ``DiscreteEpsDDPMDenoiser``), alpha = 1 / sqrt(1 + sigma^2).

    The network is asked at the fractional step t(sigma) (``notation.sigma_to_t``), as a float tensor (B,).
    ``clip``: clamp the guess of x_0 to [-clip, clip], the data's range (pixels: 1.0; None for latents).
    """
    def denoise(x: torch.Tensor, sigma: float) -> torch.Tensor:
        t = float(sigma_to_t(schedule, sigma))  # checks sigma lies in the schedule's range
        t_batch = torch.full((x.shape[0],), t, dtype=torch.float32, device=x.device)  # (B,)
        x0 = x - sigma * model(x / math.sqrt(1 + sigma**2), t_batch)  # x / sqrt(1 + sigma^2) = x_t
        return x0 if clip is None else x0.clamp(-clip, clip)

    return denoise


def score_from_denoiser(denoise: Denoiser) -> Callable[[torch.Tensor, float], torch.Tensor]:
    """score(x, sigma) = (D(x; sigma) - x) / sigma^2 (EDM eq. 3), the score of x = x_0 + sigma eps."""
    def score(x: torch.Tensor, sigma: float) -> torch.Tensor:
        return (denoise(x, sigma) - x) / sigma**2

    return score


def denoising_score_matching_loss(score_fn: ScoreFn, schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor,
                                  noise: torch.Tensor) -> torch.Tensor:
    """Denoising score matching (Vincent 2011) weighted by sigma_t^2 (Song & Ermon 2019, eq. 6), averaged:

        mean || sigma_t score(x_t, t) + eps ||^2,    x_t = alpha_t x_0 + sigma_t eps

    The target -eps / sigma_t is the score of q(x_t | x_0). For score = -eps_theta / sigma_t this is exactly the
    eps loss of chapter 04: predicting the noise *is* score matching. x0, noise (B, ...); t (B,) int64 steps.
    """
    check_float_tensor(x0, "x0")
    xt = schedule.add_noise(x0, noise, t)
    _, sigma = alpha_sigma(schedule, t)  # float64 (B,)
    return (coefficient(sigma, xt) * score_fn(xt, t) + noise).pow(2).mean()


def langevin(score_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, step_size: float, num_steps: int, *,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Langevin dynamics (unadjusted; Song & Ermon 2019, eq. 4): ``num_steps`` times

        x <- x + (step_size / 2) score(x) + sqrt(step_size) z,     z ~ N(0, I) from ``generator``

    With a small step and enough steps, x ends up distributed by the p whose score this is, from any start.
    x: (B, ...) the start; score_fn(x) -> (B, ...). Returns (B, ...), detached.
    """
    check_float_tensor(x, "x")
    step_size = check_number(step_size, "step_size", positive=True)
    for _ in range(check_int(num_steps, "num_steps", 0)):
        z = randn(x.shape, generator, x.dtype, x.device)  # drawn on the CPU: one seed, one result on every device
        x = (x + 0.5 * step_size * score_fn(x) + math.sqrt(step_size) * z).detach()
    return x


def annealed_langevin(score_fn: Callable[[torch.Tensor, float], torch.Tensor], x: torch.Tensor,
                      sigmas: Sequence[float], step_size: float, steps_per_level: int, *,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1): Langevin at each noise level of ``sigmas``
    in turn, from the largest down, with step alpha_i = step_size * sigma_i^2 / sigma_L^2 (sigma_L the last).

    Large noise first fills the space between the data's modes, so the chain finds all of them; the last,
    small level sharpens the samples. score_fn(x, sigma) is the score of the data noised by sigma, in EDM's
    scaling x = x_0 + sigma eps (``score_from_denoiser(denoiser_from_eps(model, schedule))``).
    x: (B, ...) the start, e.g. sigmas[0] * N(0, I). Returns (B, ...).
    """
    levels = [check_number(s, "each of sigmas", positive=True) for s in sigmas]
    if not levels or any(a <= b for a, b in zip(levels, levels[1:])):
        raise ValueError(f"sigmas must be a non-empty list of noise levels falling strictly, got {list(sigmas)}")
    for sigma in levels:
        alpha = step_size * (sigma / levels[-1]) ** 2  # Song & Ermon: the step follows the noise's variance
        x = langevin(lambda y, s=sigma: score_fn(y, s), x, alpha, steps_per_level, generator=generator)
    return x
