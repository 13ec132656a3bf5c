"""The autoencoder's objective: reconstruct the picture through a small Gaussian latent (chapter 08).

    1. draw pictures x and noise (B, c, h, w) from the run's generator
    2. q(z | x) = N(mean, std^2) from the encoder; z = mean + std * noise   (the reparameterisation trick)
    3. loss = mean |x - D(z)|  +  kl_weight * KL(q || N(0, I)) / (number of pixel values)

The L1 reconstruction term is latent diffusion's (Rombach et al. 2022, who add a perceptual and an
adversarial term that this course leaves out). Dividing the KL by the number of pixel values puts
``kl_weight`` on their scale: their summed losses with weight 1e-6 are these averaged ones. After
training, ``finish`` measures the latent scale s on the training pictures (``latent.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diffusion_lab.latent import measure_latent_scale
from diffusion_lab.models.autoencoder import Autoencoder
from diffusion_lab.tensors import check_finite_data, check_images, check_number
from diffusion_lab.training.config import TrainConfig
from diffusion_lab.training.objective import Batch, Objective


def autoencoder_loss(model: Autoencoder, x: torch.Tensor, noise: torch.Tensor, kl_weight: float) -> torch.Tensor:
    """Per picture: mean |x - D(z)| + kl_weight * KL / (C H W), with z = mean + std * noise. Returns (B,)."""
    x_hat, q = model(x, noise)
    reconstruction = (x_hat.float() - x).abs().flatten(1).mean(1)  # (B,)
    return reconstruction + kl_weight * q.kl().float() / x[0].numel()  # (B,)


@dataclass
class AutoencoderObjective(Objective):
    """Train an ``Autoencoder`` on pictures (N, C, H, W) in [-1, 1]. latent_shape: (c, h, w) of its latent."""

    images: torch.Tensor
    latent_shape: tuple[int, int, int]
    kl_weight: float = 1e-2

    def __post_init__(self) -> None:
        check_finite_data(check_images(self.images, "images"), "the training images")
        check_number(self.kl_weight, "kl_weight")

    def describe(self) -> dict:
        return {"data_shape": list(self.images.shape), "kl_weight": self.kl_weight}

    def draw(self, generator: torch.Generator, config: TrainConfig) -> Batch:
        idx = torch.randint(len(self.images), (config.batch_size,), generator=generator)  # (B,)
        noise = torch.randn((config.batch_size, *self.latent_shape), generator=generator)  # (B, c, h, w)
        return {"x": self.images[idx], "noise": noise}

    def loss(self, model: Autoencoder, batch: Batch) -> torch.Tensor:
        return autoencoder_loss(model, batch["x"], batch["noise"], self.kl_weight)

    def finish(self, model: Autoencoder) -> dict:
        """Measure the latent scale s on the training pictures; it is saved with the weights."""
        return {"latent_scale": measure_latent_scale(model, self.images)}
