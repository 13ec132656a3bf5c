"""The latent space of latent diffusion: the scale s, and the one encode / decode pair that applies it (chapter 08).

The diffusion model's noise schedule assumes data of about unit variance: at t = T it expects pure
N(0, I) noise to have drowned the signal. An autoencoder's latents have whatever spread training gave
them (a small KL weight barely constrains it), so latent diffusion multiplies them by a measured
constant first:

    s = 1 / std(E(x))      over the training latents       (Rombach et al.'s ``scale_by_std``)
    z = s * E(x)           what the diffusion model learns and samples
    x = D(z / s)           what the user sees

Stable Diffusion's famous 0.18215 is this s for its autoencoder. Forgetting it, or applying it twice
or on one side only, is the bug latent-diffusion users report most. Here s is a buffer of the
autoencoder (saved with its weights, NaN until measured), and these two functions are the only code
that applies it: ``encode`` refuses an autoencoder whose scale was never measured.
"""

from __future__ import annotations

import math

import torch

from diffusion_lab.models.autoencoder import Autoencoder
from diffusion_lab.tensors import eval_mode


def _scale(autoencoder: Autoencoder) -> torch.Tensor:
    s = autoencoder.latent_scale
    value = float(s)  # one read per encode / decode call (a sync on a GPU), never one per sampling step
    if not math.isfinite(value) or value <= 0:
        raise ValueError("this autoencoder's latent scale s was never measured (it is NaN): call "
                         "latent.measure_latent_scale(autoencoder, training_images) after training it, "
                         "or load a trained one with load_pretrained('mnist_autoencoder')")
    return s


@torch.no_grad()
def _means(autoencoder: Autoencoder, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The posterior means E(x), unscaled, computed in batches on the autoencoder's device; on x's device."""
    device = autoencoder.latent_scale.device
    with eval_mode(autoencoder):
        return torch.cat([autoencoder.posterior(x[i:i + batch_size].to(device)).mean.to(x.device)
                          for i in range(0, len(x), batch_size)])


@torch.no_grad()
def measure_latent_scale(autoencoder: Autoencoder, x: torch.Tensor, *, batch_size: int = 500) -> float:
    """Set and return s = 1 / std of the latents E(x) of pictures x (N, C, H, W) (use the training set).

    The std is over every latent value of every picture (all channels and positions together), so the
    relative sizes of the channels are kept, as Stable Diffusion's single number keeps them."""
    if len(x) < 2:
        raise ValueError(f"measure the latent scale on many pictures (the training set), got {len(x)}")
    std = float(_means(autoencoder, x, batch_size).double().std())
    if not math.isfinite(std) or std == 0:
        raise ValueError(f"the latents have std {std}: the autoencoder is broken (untrained or diverged)")
    autoencoder.latent_scale.fill_(1.0 / std)
    return float(autoencoder.latent_scale)  # the stored (float32) value, so what is recorded is what is used


@torch.no_grad()
def encode(autoencoder: Autoencoder, x: torch.Tensor, *, batch_size: int = 500) -> torch.Tensor:
    """z = s * E(x): pictures x (N, C, H, W) in [-1, 1] -> scaled latents (N, c, h, w) of about unit std,
    on x's device. E(x) is the posterior's mean (the latent diffusion model learns these)."""
    s = _scale(autoencoder)
    return _means(autoencoder, x, batch_size) * s.to(x.device)


@torch.no_grad()
def decode(autoencoder: Autoencoder, z: torch.Tensor, *, batch_size: int = 500) -> torch.Tensor:
    """x = D(z / s): scaled latents z (N, c, h, w) -> pictures (N, C, H, W), clipped to [-1, 1], on z's device."""
    s = _scale(autoencoder)
    device = s.device
    with eval_mode(autoencoder):
        return torch.cat([autoencoder.reconstruct(z[i:i + batch_size].to(device) / s).clamp(-1, 1).to(z.device)
                          for i in range(0, len(z), batch_size)])
