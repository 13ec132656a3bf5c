"""Tiny, untrained chapter-11 checkpoints for the tests: an RGB 64x64 autoencoder named like the real first stage,
a latent text U-Net named tiny_sd (the tiny_latent_text preset's shapes) and a tiny upsampler."""

from __future__ import annotations

from pathlib import Path

import torch
from fresh_weights import awake

from diffusion_lab.cli.presets import get_preset
from diffusion_lab.data.scenes import make_scenes
from diffusion_lab.latent import encode, measure_latent_scale
from diffusion_lab.models.autoencoder import Autoencoder, AutoencoderConfig
from diffusion_lab.models.text_unet import TextUNet
from diffusion_lab.models.upsampler import Upsampler, UpsamplerConfig
from diffusion_lab.pretrained import save_pretrained
from diffusion_lab.sampling.thresholding import measure_latent_range
from diffusion_lab.schedules import NoiseSchedule

AUTOENCODER = "scenes64_autoencoder"
TINY_AUTOENCODER = AutoencoderConfig(in_channels=3, image_size=64, base_channels=8, channel_mults=(1, 2, 2),
                                     num_groups=4)  # 64x64 -> 4x16x16, as the real one




def write_autoencoder(folder: Path, seed: int = 0) -> Autoencoder:
    """Save a tiny RGB autoencoder, its latent scale measured on 32 scenes, as ``AUTOENCODER`` in ``folder``."""
    torch.manual_seed(seed)
    autoencoder = Autoencoder(TINY_AUTOENCODER)
    measure_latent_scale(autoencoder, make_scenes(32, size=64, seed=1).images)
    save_pretrained(AUTOENCODER, autoencoder, autoencoder.config, kind="autoencoder", schedule=None, made_by={},
                    root=folder)
    return autoencoder


def write_tiny_sd(folder: Path, *, name: str = "tiny_sd", latent_range: bool = True) -> Path:
    """Save the autoencoder and a tiny latent text U-Net (random, its zero layers randomised) as ``name``."""
    autoencoder = write_autoencoder(folder)
    torch.manual_seed(1)
    model = awake(TextUNet(get_preset("tiny_latent_text").model_config))
    latent = {"autoencoder": AUTOENCODER, "latent_scale": float(autoencoder.latent_scale)}
    if latent_range:
        latent["latent_range"] = measure_latent_range(encode(autoencoder, make_scenes(32, size=64, seed=1).images))
    save_pretrained(name, model, model.config, kind="latent_text_unet", schedule=NoiseSchedule.from_name("cosine", 1000),
                    made_by={}, root=folder, extra={"latent": latent})
    return folder


def write_upsampler(folder: Path) -> Path:
    """Save a tiny 2x upsampler (random, zero layers randomised) as "upsampler"."""
    torch.manual_seed(2)
    upsampler = awake(Upsampler(UpsamplerConfig.tiny()))
    save_pretrained("upsampler", upsampler, upsampler.config, kind="upsampler",
                    schedule=NoiseSchedule.from_name("cosine", 1000), made_by={}, root=folder)
    return folder
