"""Sampling a diffusion upsampler: a picture twice as large from a low-res one (chapter 10).

    1. low_res_s = noise_augment(low_res, s, eps_s)              the fixed augmentation level s, once
    2. x_T ~ N(0, I) at twice the size
    3. any sampler of ``samplers.py`` over eps_theta(x_t, t, low_res_s, s)   (DDIM by default)

The upsampler is bound to its condition in a closure, so chapter 05's loop (or chapter 09's solvers)
runs it unchanged, as guidance does. Step 1 uses the same forward process as training's
noise-conditioning augmentation: a small s (Imagen samples its upsamplers at a fixed small level)
hides the flaws of a first stage's samples without throwing away what they show.
"""

from __future__ import annotations

import torch
from torch import nn

from diffusion_lab.models.upsampler import check_augmentation_level, noise_augment
from diffusion_lab.pipelines.samplers import plan_sampler
from diffusion_lab.sampling import Callback
from diffusion_lab.sampling.scheduler import randn
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.tensors import check_images, eval_mode


@torch.no_grad()
def upsample(upsampler: nn.Module, low_res: torch.Tensor, *, schedule: NoiseSchedule, steps: int,
             augmentation_level: float, generator: torch.Generator | None = None, sampler: str = "ddim",
             eta: float = 0.0, callback: Callback | None = None) -> torch.Tensor:
    """Enlarge ``low_res`` (B, C, h, w) in [-1, 1] to (B, C, 2h, 2w) in [-1, 1] with ``upsampler``.

    schedule: the noise schedule the upsampler was trained with (``load_pretrained(...).schedule``).
    steps: sampler steps; augmentation_level: s in [0, 1], the level the low res is noised to (0: not at
    all); keep it within the levels the model was trained on. sampler, eta, callback: as for every pipeline
    (``samplers.py``). The random numbers come from ``generator`` on its device (the CPU without one), in
    this order: the augmentation's noise, x_T, then the sampler's own. The model runs in eval mode and
    the mode it had is restored.
    """
    check_images(low_res, "low_res")
    B, C, h, w = low_res.shape
    check_augmentation_level(augmentation_level, B, low_res.device)  # one level for all: a clear error now
    run = plan_sampler(sampler, schedule, steps, eta, clip_range=1.0)  # checks sampler, steps and eta now
    low_res_s = noise_augment(low_res, augmentation_level, randn(low_res.shape, generator, low_res.dtype,
                                                                 low_res.device))  # (B, C, h, w)
    x_T = randn((B, C, 2 * h, 2 * w), generator, torch.float32, low_res.device)  # on the CPU, then moved

    def denoiser(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # the condition bound in
        return upsampler(xt, t, low_res_s, augmentation_level)

    with eval_mode(upsampler):
        return run(denoiser, x_T, generator=generator, callback=callback).clamp(-1, 1)  # (B, C, 2h, 2w)
