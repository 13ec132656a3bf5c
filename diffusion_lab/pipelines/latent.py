"""The pipeline of a latent diffusion model: sample latents, then decode them (chapter 08).

A latent model's checkpoint names the autoencoder whose scaled latents it learned, and the scale s those
latents had. Loading checks that the autoencoder found has the same s: one retrained since gives other
latents, and decoding through it would turn the model's samples into noise without a word.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from diffusion_lab.latent import decode
from diffusion_lab.pipelines.base import DiffusionPipeline
from diffusion_lab.pretrained import CheckpointError, Pretrained, load_pretrained


class LatentImagePipeline(DiffusionPipeline):
    """An unconditional denoiser over an autoencoder's scaled latents; ``__call__`` returns decoded pictures
    (N, C, H, W) in [-1, 1], ``sample_latents`` the latents (N, c, h, w) themselves.

    Latents are not bounded like pixels, so the sampler's guess of z_0 is not clipped (as Rombach et al.)."""

    clip_range = None

    def __init__(self, pre: Pretrained, root: str | Path | None = None) -> None:
        super().__init__(pre, root)
        latent = pre.info.get("latent")
        if not isinstance(latent, dict) or "autoencoder" not in latent or "latent_scale" not in latent:
            raise CheckpointError(f"{pre.name}.json does not say which autoencoder decodes its latents "
                                  f"('latent': {{'autoencoder': ..., 'latent_scale': ...}}); remake it with its command")
        self.autoencoder = load_pretrained(latent["autoencoder"], root=root).model  # on the CPU: checked first
        found = float(self.autoencoder.latent_scale)
        if not math.isclose(found, latent["latent_scale"], rel_tol=1e-5):
            raise CheckpointError(f"{pre.name} learned the latents of {latent['autoencoder']} scaled by s = "
                                  f"{latent['latent_scale']:.6g}, but the {latent['autoencoder']} found has s = "
                                  f"{found:.6g}: it was retrained since. Retrain {pre.name} on its latents "
                                  f"(python -m diffusion_lab train --preset {pre.name}) or restore both with "
                                  f"`git checkout data/checkpoints`")
        self.autoencoder.to(self.device)

    def sample_latents(self, num: int, **kwargs: Any) -> torch.Tensor:
        """``num`` scaled latents (num, c, h, w), sampled as ``DiffusionPipeline.__call__`` samples."""
        return super().__call__(num, **kwargs)

    def __call__(self, num: int, **kwargs: Any) -> torch.Tensor:
        """``num`` pictures: latents from ``sample_latents(num, **kwargs)``, decoded by x = D(z / s)."""
        return decode(self.autoencoder, self.sample_latents(num, **kwargs))
