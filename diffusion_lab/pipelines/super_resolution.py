"""Sampling a diffusion upsampler: a picture twice as large from a low-res one (chapter 10).

    1. low_res_s = noise_augment(low_res, s, eps_s)              the fixed augmentation level s, once
    2. x_T ~ N(0, I) at twice the size                            (strength 1, as the papers sample)
       or the bilinear enlargement, noised to the sampler's step K - round(strength K)   (strength < 1)
    3. any sampler of ``samplers.py`` over eps_theta(x_t, t, low_res_s, s)   (DDIM by default)

Why start part-way (``strength`` 0.5 by default, SDEdit's start from chapter 08): an eps-predictor reads x_0 off
the noisiest steps as (x_t - sqrt(1 - abar) eps_pred) / sqrt(abar), which multiplies its small errors by
1 / sqrt(abar) (about 13 at t = 950 on the cosine schedule). Our small upsampler, sampled from pure noise in a
few DDIM steps, keeps that early wrong guess (a wrong background colour, blotches); started from the bilinear
enlargement noised half-way, it only has to add the detail enlarging lost, in half the model calls
(bench/upsampler_start.py measures both). The papers' upsamplers, trained far longer, sample from noise.
"""

from __future__ import annotations

import torch
from torch import nn

from diffusion_lab.models.upsampler import check_augmentation_level, enlarge, noise_augment
from diffusion_lab.pipelines.samplers import SCHEDULERS, make_scheduler, plan_sampler
from diffusion_lab.sampling import Callback
from diffusion_lab.sampling.scheduler import randn
from diffusion_lab.sampling.sdedit import sdedit, sdedit_start
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.tensors import check_images, eval_mode

START_STRENGTH = 0.5  # where sampling starts by default: the enlargement noised half-way (module docstring)


@torch.no_grad()
def upsample(upsampler: nn.Module, low_res: torch.Tensor, *, schedule: NoiseSchedule, steps: int,
             augmentation_level: float, generator: torch.Generator | None = None, sampler: str = "ddim",
             eta: float = 0.0, callback: Callback | None = None, strength: float = START_STRENGTH) -> torch.Tensor:
    """Enlarge ``low_res`` (B, C, h, w) in [-1, 1] to (B, C, 2h, 2w) in [-1, 1] with ``upsampler``.

    schedule: the noise schedule the upsampler was trained with (``load_pretrained(...).schedule``).
    steps: sampler steps; augmentation_level: s in [0, 1], the level the low res is noised to (0: not at
    all); keep it within the levels the model was trained on. sampler, eta, callback: as for every pipeline
    (``samplers.py``). strength: 1 starts from pure noise at twice the size; below 1, from the bilinear
    enlargement noised to the sampler's step K - round(strength K), which skips the first round(strength K)
    steps (DDPM and DDIM only). The random numbers come from ``generator`` on its device (the CPU without
    one), in this order: the augmentation's noise, x_T (or the start's noise), then the sampler's own. The
    model runs in eval mode and the mode it had is restored.
    """
    check_images(low_res, "low_res")
    B, C, h, w = low_res.shape
    check_augmentation_level(augmentation_level, B, low_res.device)  # one level for all: a clear error now
    run = plan_sampler(sampler, schedule, steps, eta, clip_range=1.0)  # checks sampler, steps and eta now
    sdedit_start(steps, strength)  # checks strength now
    if strength < 1 and sampler not in SCHEDULERS:
        raise ValueError(f"strength < 1 starts part-way through DDPM or DDIM; sampler {sampler!r} starts from "
                         f"noise: use strength=1.0 with it, or sampler='ddim'")
    low_res_s = noise_augment(low_res, augmentation_level, randn(low_res.shape, generator, low_res.dtype,
                                                                 low_res.device))  # (B, C, h, w)

    def denoiser(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # the condition bound in
        return upsampler(xt, t, low_res_s, augmentation_level)

    with eval_mode(upsampler):
        if strength < 1:  # from the enlargement, noised part-way (SDEdit)
            scheduler = make_scheduler(sampler, schedule, steps, eta, clip_range=1.0)
            x = sdedit(denoiser, scheduler, enlarge(low_res), strength, generator=generator, callback=callback)
        else:
            x_T = randn((B, C, 2 * h, 2 * w), generator, torch.float32, low_res.device)  # on the CPU, then moved
            x = run(denoiser, x_T, generator=generator, callback=callback)
    return x.clamp(-1, 1)  # (B, C, 2h, 2w)
