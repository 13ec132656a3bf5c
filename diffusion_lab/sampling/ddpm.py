"""DDPM's ancestral sampler, one step through the posterior q(x_{t_prev} | x_t, x_0) (chapter 05).

    posterior_mean_variance  mean and variance of q(x_{t_prev} | x_t, x_0)          DDPM eq. 6-7
    ddpm_step                one ancestral step, x_{t_prev} ~ q(. | x_t, pred_x0)   DDPM Algorithm 2
    DDPMScheduler            diffusers-shaped: set_timesteps, timesteps, step -> StepOutput

The scheduler matches diffusers' DDPMScheduler(variance_type="fixed_small", prediction_type="epsilon",
timestep_spacing="leading"); tests/test_sampling.py checks it.
"""

from __future__ import annotations

import torch

from diffusion_lab.sampling.scheduler import (
    Scheduler,
    StepOutput,
    alpha_bar_at,
    check_pair,
    predict_x0,
    randn,
)
from diffusion_lab.schedules import NoiseSchedule


def posterior_mean_variance(
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    xt: torch.Tensor,
    t: int | torch.Tensor,
    t_prev: int | torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of the posterior q(x_{t_prev} | x_t, x_0), DDPM eq. 6-7 (Ho et al. 2020).

    With alpha_t = abar_t / abar_prev and beta_t = 1 - alpha_t (the schedule's own alpha_t, beta_t when
    t_prev = t - 1, the default; fewer sampling steps skip, t_prev < t - 1, as in diffusers):

        mean = sqrt(abar_prev) beta_t / (1 - abar_t) x_0 + sqrt(alpha_t) (1 - abar_prev) / (1 - abar_t) x_t
        beta_tilde_t = (1 - abar_prev) / (1 - abar_t) * beta_t      (abar_{-1} = 1, so beta_tilde_0 = 0)

    x0, xt: (B, ...); t, t_prev: ints or int64 (B,). Returns (mean (B, ...), variance broadcastable to it).
    """
    check_pair(x0, xt, "x0", "xt")
    t_prev = torch.as_tensor(t) - 1 if t_prev is None else t_prev
    if bool((torch.as_tensor(t_prev) >= torch.as_tensor(t)).any()):
        raise ValueError("t_prev must be smaller than t: the posterior steps from x_t back to x_{t_prev}")
    abar_t, abar_prev = alpha_bar_at(schedule, t, xt), alpha_bar_at(schedule, t_prev, xt)
    alpha_t = abar_t / abar_prev
    beta_t = 1 - alpha_t
    coef_x0 = abar_prev.sqrt() * beta_t / (1 - abar_t)
    coef_xt = alpha_t.sqrt() * (1 - abar_prev) / (1 - abar_t)
    mean = coef_x0 * x0 + coef_xt * xt
    variance = (1 - abar_prev) / (1 - abar_t) * beta_t
    return mean, variance


def ddpm_step(
    schedule: NoiseSchedule,
    xt: torch.Tensor,
    eps_pred: torch.Tensor,
    t: int,
    t_prev: int,
    noise: torch.Tensor | None = None,
    clip: bool = False,
    clip_range: float = 1.0,
) -> StepOutput:
    """One ancestral step, line 4 of Algorithm 2 of Ho et al. 2020, written through the posterior:

    x_{t_prev} = mean(x_t, pred_x0) + sqrt(beta_tilde_t) * z,   z = ``noise`` ~ N(0, I) shaped like xt.

    Pass ``noise=None`` at the last step (t = 0), where the algorithm sets z = 0.
    """
    x0 = predict_x0(schedule, xt, eps_pred, t, clip=clip, clip_range=clip_range)
    mean, variance = posterior_mean_variance(schedule, x0, xt, t, t_prev)
    prev = mean if noise is None else mean + variance.sqrt() * noise
    return StepOutput(prev_sample=prev, pred_x0=x0)


class DDPMScheduler(Scheduler):
    """Ancestral sampling from the posterior, Algorithm 2 of Ho et al. 2020, shaped like diffusers'
    DDPMScheduler(variance_type="fixed_small", prediction_type="epsilon", timestep_spacing="leading").

    Uses all T steps until ``set_timesteps(K)`` asks for fewer; then each step jumps from t to t_prev
    through q(x_{t_prev} | x_t, x_0), exactly as diffusers does. As in diffusers, the guess of x_0 is
    clipped to [-clip_sample_range, clip_sample_range] (default [-1, 1], images): pass the data's range,
    or ``clip_sample=False``, for other data.
    """

    def __init__(self, schedule: NoiseSchedule, clip_sample: bool = True, clip_sample_range: float = 1.0) -> None:
        super().__init__(schedule, clip_sample, clip_sample_range)
        self.set_timesteps()

    def step(
        self,
        eps_pred: torch.Tensor,
        t: int | torch.Tensor,
        xt: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> StepOutput:
        """x_t -> x_{t_prev} = posterior mean + sqrt(beta_tilde_t) z, with z drawn from ``generator``
        (shaped and drawn like diffusers' noise) except at t = 0, where no noise is drawn or added."""
        t, t_prev = self._check_step(eps_pred, t, xt)
        noise = randn(xt.shape, generator, xt.dtype, xt.device) if t > 0 else None
        return ddpm_step(self.schedule, xt, eps_pred, t, t_prev, noise, clip=self.clip_sample,
                         clip_range=self.clip_sample_range)
