"""Inpainting by replacement: redraw a region, keep the rest (RePaint, Lugmayr et al. 2022) (chapter 11).

A denoiser trained on whole pictures can fill a hole without being trained for it. At each step the
known region of x_{t_prev} is replaced by the original x_0 noised to that same step, so the model keeps
seeing a picture whose known part is right for the noise level, and draws the unknown part to fit it
(RePaint's Algorithm 1, without its resampling jumps):

    x_unknown = the sampler's step from x_t                      (DDPM or DDIM, guided or not)
    x_known   = sqrt(abar_prev) x_0 + sqrt(1 - abar_prev) eps    fresh eps each step; x_0 itself after the last
    x_prev    = mask * x_unknown + (1 - mask) * x_known          mask = 1 where to redraw

The last step's known part is x_0 itself, so outside the mask the result *is* the original, exactly.
Works on pixels or on latents (chapter 11 repaints latents: ``TinySDPipeline.inpaint``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from diffusion_lab.sampling.ddim import DDIMScheduler
from diffusion_lab.sampling.ddpm import DDPMScheduler
from diffusion_lab.sampling.loop import Callback, Model
from diffusion_lab.tensors import check_float_tensor

# noise(shape) -> N(0, I) of that shape: where the fresh noise of each step comes from
Noise = Callable[[tuple[int, ...]], torch.Tensor]


@torch.no_grad()
def repaint(model: Model, scheduler: DDPMScheduler | DDIMScheduler, x0: torch.Tensor, mask: torch.Tensor,
            x_T: torch.Tensor, noise: Noise, *, generator: torch.Generator | None = None,
            callback: Callback | None = None) -> torch.Tensor:
    """Redraw ``x0`` (B, ...) where ``mask`` is 1, keep it where it is 0, starting from x_T (B, ...) ~ N(0, I).

    mask: (B or 1, 1 or C, ...) of 0s and 1s, broadcast against x0. noise(shape): the fresh eps of each
    step's known part, called once per step but the last (draw from a seeded generator, for determinism); a
    stochastic scheduler (DDPM, DDIM with eta > 0) draws its own noise from ``generator``. Call
    ``scheduler.set_timesteps`` first. Returns (B, ...), equal to x0 where the mask is 0.
    """
    check_float_tensor(x0, "x0")
    check_float_tensor(x_T, "x_T")
    if x_T.shape != x0.shape:
        raise ValueError(f"x_T has shape {tuple(x_T.shape)} but x0 has {tuple(x0.shape)}: give one of each")
    if mask.ndim != x0.ndim or any(m not in (1, x) for m, x in zip(mask.shape, x0.shape)):
        raise ValueError(f"mask {tuple(mask.shape)} must broadcast against x0 {tuple(x0.shape)}, "
                         f"e.g. (B, 1, H, W) for pictures or latents")
    mask = mask.to(x0.device, x0.dtype)
    timesteps = scheduler.timesteps.tolist()
    xt = x_T
    for i, t in enumerate(timesteps):
        t_batch = torch.full((xt.shape[0],), t, dtype=torch.int64, device=xt.device)  # (B,)
        out = scheduler.step(model(xt, t_batch), t, xt, generator=generator)
        if i + 1 < len(timesteps):  # the known part, noised to the step the sampler just reached
            t_prev = torch.full_like(t_batch, timesteps[i + 1])
            known = scheduler.add_noise(x0, noise(tuple(x0.shape)).to(x0.device, x0.dtype), t_prev)
        else:
            known = x0  # after the last step: nothing noised
        xt = mask * out.prev_sample + (1 - mask) * known
        if callback is not None:
            callback(i, t, xt, out.pred_x0)
    return xt
