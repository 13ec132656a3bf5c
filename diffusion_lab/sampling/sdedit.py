"""Image-to-image by SDEdit: noise a picture part of the way, then denoise it (chapter 08; chapter 11's "vary").

Meng et al. 2022 ("SDEdit") observed that a picture noised to a middle step t keeps its layout but has
lost its details, and that the reverse process started there from the *noised picture* instead of pure
noise draws a new sample that keeps what survived the noise. ``strength`` in [0, 1] says how far:

    start = K - round(strength * K)      of the K sampler steps, run only the last K - start
    x_t   = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,   t = timesteps[start]

strength 0 returns the picture untouched, 1 starts from (almost) pure noise: a new sample, nothing kept.
diffusers' img2img pipelines use the same arithmetic (with int() where this rounds).
"""

from __future__ import annotations

import torch

from diffusion_lab.sampling.ddim import DDIMScheduler
from diffusion_lab.sampling.ddpm import DDPMScheduler
from diffusion_lab.sampling.loop import Callback, Model, sample
from diffusion_lab.sampling.scheduler import randn
from diffusion_lab.tensors import check_float_tensor


def sdedit_start(num_steps: int, strength: float) -> int:
    """The index into the K = ``num_steps`` sampler timesteps where SDEdit starts: K - round(strength K).
    strength 1 -> 0 (every step), 0 -> K (none)."""
    if isinstance(strength, bool) or not isinstance(strength, int | float) or not 0 <= strength <= 1:
        raise ValueError(f"strength must be a number from 0 (keep the picture) to 1 (a new one), got {strength!r}")
    return num_steps - round(strength * num_steps)


@torch.no_grad()
def sdedit(model: Model, scheduler: DDPMScheduler | DDIMScheduler, x0: torch.Tensor, strength: float, *,
           generator: torch.Generator | None = None, callback: Callback | None = None) -> torch.Tensor:
    """Pictures (or latents) x0 (B, ...) -> new samples (B, ...) that keep what ``strength`` leaves of them.

    The noise comes from ``generator`` (on the CPU, so a seed gives the same result on every device), first
    the noise that takes x0 to the start step, then the steps' own noise. ``scheduler.set_timesteps`` first.
    """
    check_float_tensor(x0, "x0")
    start = sdedit_start(len(scheduler.timesteps), strength)
    if start == len(scheduler.timesteps):
        return x0.clone()  # strength 0: no step to run
    t = int(scheduler.timesteps[start])
    eps = randn(x0.shape, generator, torch.float32, x0.device).to(x0.dtype)
    xt = scheduler.add_noise(x0, eps, torch.full((x0.shape[0],), t, dtype=torch.int64))  # t checked on the CPU
    return sample(model, scheduler, x0.shape, generator=generator, x_T=xt, callback=callback, start=start)
