"""DDIM: deterministic (or partly stochastic) sampling in a few steps (Song et al. 2021) (chapter 05).

    ddim_sigma      the noise scale of a step                              DDIM eq. 16
    ddim_step       one step with noise level eta                          DDIM eq. 12
    DDIMScheduler   diffusers-shaped: set_timesteps, timesteps, step -> StepOutput

The scheduler matches diffusers' DDIMScheduler(set_alpha_to_one=True, prediction_type="epsilon",
timestep_spacing="leading"); tests/test_sampling.py checks it.
"""

from __future__ import annotations

import torch

from diffusion_lab.sampling.scheduler import Scheduler, StepOutput, alpha_bar_at, predict_x0, randn
from diffusion_lab.schedules import NoiseSchedule


def ddim_sigma(abar_t: torch.Tensor, abar_prev: torch.Tensor, eta: float) -> torch.Tensor:
    """The noise scale of a DDIM step, Song et al. 2021, eq. 16:

    sigma = eta * sqrt((1 - abar_prev) / (1 - abar_t)) * sqrt(1 - abar_t / abar_prev)

    eta = 0 gives deterministic DDIM; eta = 1 gives DDPM's posterior standard deviation sqrt(beta_tilde).
    """
    return eta * ((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)).sqrt()


def ddim_step(
    schedule: NoiseSchedule,
    xt: torch.Tensor,
    eps_pred: torch.Tensor,
    t: int,
    t_prev: int,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
    clip: bool = False,
    clip_range: float = 1.0,
    use_clipped_model_output: bool = True,
) -> StepOutput:
    """One DDIM step, Song et al. 2021, eq. 12:

    x_{t_prev} = sqrt(abar_prev) pred_x0 + sqrt(1 - abar_prev - sigma^2) eps_pred + sigma z

    with sigma from ``ddim_sigma`` (eq. 16) and z = ``noise`` (needed only when eta > 0). When ``clip``
    clamps pred_x0, the direction term uses the noise that the clamped pred_x0 implies
    (``use_clipped_model_output=True``, GLIDE's choice), so the step stays consistent with the x_0 it aims
    at; ``False`` reuses the model's eps_pred, as diffusers does by default. Guided sampling needs the
    default: a guided eps_pred is longer than any noise the model saw, and reusing it step after step
    drives deterministic DDIM off the data (measured in bench/results/guidance_quality.md). Without
    ``clip`` both agree.
    """
    x0 = predict_x0(schedule, xt, eps_pred, t, clip=clip, clip_range=clip_range)
    abar_t, abar_prev = alpha_bar_at(schedule, t, xt), alpha_bar_at(schedule, t_prev, xt)
    if use_clipped_model_output:
        eps_pred = (xt - abar_t.sqrt() * x0) / (1 - abar_t).sqrt()  # the noise that the clamped x_0 implies
    sigma = ddim_sigma(abar_t, abar_prev, eta)
    # clamp: 1 - abar_prev - sigma^2 >= 0 for eta <= 1; the clamp only absorbs float rounding.
    prev = abar_prev.sqrt() * x0 + (1 - abar_prev - sigma**2).clamp(min=0).sqrt() * eps_pred
    if eta > 0:
        if noise is None:
            raise ValueError("a DDIM step with eta > 0 needs noise: pass noise=torch.randn_like(xt)")
        prev = prev + sigma * noise
    return StepOutput(prev_sample=prev, pred_x0=x0)


class DDIMScheduler(Scheduler):
    """DDIM, Song et al. 2021 (eq. 12), any number of steps and any eta in [0, 1], shaped like diffusers'
    DDIMScheduler(set_alpha_to_one=True, steps_offset=0, prediction_type="epsilon",
    timestep_spacing="leading").

    eta = 0 is deterministic; eta = 1 with all T steps is DDPM. Call ``set_timesteps(K)`` before stepping.
    The guess of x_0 is clipped as in ``DDPMScheduler``. ``use_clipped_model_output`` is diffusers'
    argument of the same name (see ``ddim_step``), but on by default here: guided sampling drifts off
    the data without it. Pass ``use_clipped_model_output=False`` to reproduce diffusers' default exactly.
    """

    def __init__(self, schedule: NoiseSchedule, eta: float = 0.0, clip_sample: bool = True,
                 clip_sample_range: float = 1.0, use_clipped_model_output: bool = True) -> None:
        super().__init__(schedule, clip_sample, clip_sample_range)
        if not isinstance(use_clipped_model_output, bool):
            raise TypeError(f"use_clipped_model_output must be True or False, got {use_clipped_model_output!r}")
        self.use_clipped_model_output = use_clipped_model_output
        if isinstance(eta, bool) or not isinstance(eta, int | float):
            raise TypeError(f"eta must be a float, got {type(eta).__name__}")
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must lie in [0, 1] (0: deterministic DDIM, 1: DDPM-like noise), got {eta}")
        self.eta = float(eta)

    def step(
        self,
        eps_pred: torch.Tensor,
        t: int | torch.Tensor,
        xt: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> StepOutput:
        """x_t -> x_{t_prev} by eq. 12; with eta > 0, z is drawn from ``generator`` at every step
        (the last included, where sigma = 0), as diffusers does."""
        t, t_prev = self._check_step(eps_pred, t, xt)
        noise = randn(xt.shape, generator, xt.dtype, xt.device) if self.eta > 0 else None
        return ddim_step(self.schedule, xt, eps_pred, t, t_prev, self.eta, noise, clip=self.clip_sample,
                         clip_range=self.clip_sample_range, use_clipped_model_output=self.use_clipped_model_output)
