"""A diffusion upsampler: 2x super-resolution conditioned on the low-resolution picture (chapter 10).

    eps_theta(x_t, t, low_res, s) = UNet([x_t, enlarge(low_res)], t, extra_emb = embed(s))

The second stage of a cascade (SR3, Saharia et al. 2021; cascaded diffusion, Ho et al. 2021; DALL-E 2
and Imagen use two of them): a denoiser of the *high*-resolution image x_t (B, C, H, W) that also sees
the low-resolution picture (B, C, H/2, W/2), enlarged to H x W by bilinear interpolation (smooth, so
the network adds detail rather than undoing 2x2 blocks) and concatenated along channels, noisy image
first: 2C input channels, C output channels (the predicted noise eps).

Noise-conditioning augmentation (Ho et al. 2021, sec. 4.2; Imagen calls it critical): at training the
low-res picture is itself noised by the forward process at a random level s in [0, s_max], and the
network is told s (an embedding added to the time embedding). A model that has seen corrupted
conditions tolerates the flaws of a first stage's samples; at sampling a small fixed s is used. The
level is continuous time on the cosine schedule, alpha_bar(s) from Nichol & Dhariwal's formula with
alpha_bar(0) = 1, so s = 0 is exactly "no augmentation" and s = 1 is pure noise (``noise_augment``).

Fully convolutional, as DALL-E 2's upsamplers ("only spatial convolutions ... no attention layers"): no
attention anywhere, so a model trained on 32x32 crops runs on whole 64x64 or 128x128 pictures. (Its
GroupNorms average over the whole picture, as in SR3's and Imagen's upsamplers, so a pixel's output
depends a little on the rest of the picture; nothing in the network is tied to one size.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from diffusion_lab.models.embeddings import TimestepEmbedding
from diffusion_lab.models.unet import UNet, UNetConfig
from diffusion_lab.schedules import cosine_alpha_bar
from diffusion_lab.tensors import append_dims, check_float_tensor

LEVEL_SCALE = 1000.0  # s in [0, 1] is embedded as s * 1000, so its sines span the frequencies of steps 0..999


def downsample(images: torch.Tensor) -> torch.Tensor:
    """Halve H and W by averaging 2x2 blocks: (B, C, H, W) -> (B, C, H/2, W/2). How training makes the low
    res from a high-res crop, so it is what the upsampler learns to undo."""
    if images.ndim != 4 or images.shape[-2] % 2 or images.shape[-1] % 2:
        raise ValueError(f"downsample needs images (B, C, H, W) with even H and W, got {tuple(images.shape)}")
    return F.avg_pool2d(images, 2)


def enlarge(low_res: torch.Tensor) -> torch.Tensor:
    """Double H and W by bilinear interpolation: (B, C, h, w) -> (B, C, 2h, 2w), what the network reads."""
    return F.interpolate(low_res, scale_factor=2.0, mode="bilinear", align_corners=False)


def augmentation_alpha_bar(level: torch.Tensor) -> torch.Tensor:
    """alpha_bar(s) of the cosine schedule in continuous time, s (B,) in [0, 1]: 1 at s = 0, ~0 at s = 1.
    Computed in float64 on the CPU (as the schedules are; Apple's MPS has no float64), returned in float32."""
    s = level.detach().cpu().double()
    abar = (cosine_alpha_bar(s) / cosine_alpha_bar(torch.zeros_like(s))).clamp(0, 1)
    return abar.float().to(level.device)


def check_augmentation_level(level: float | torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    """An augmentation level s as a (B,) float32 tensor on ``device``: one number for all, or one per sample."""
    if isinstance(level, bool) or not isinstance(level, int | float | torch.Tensor):
        raise TypeError(f"augmentation_level must be a number in [0, 1] or a (B,) tensor, got {type(level).__name__}")
    level = torch.as_tensor(level, dtype=torch.float32)
    if level.ndim == 0:
        level = level.expand(batch_size)
    if level.shape != (batch_size,):
        raise ValueError(f"augmentation_level must be one number or ({batch_size},), one per sample, "
                         f"got shape {tuple(level.shape)}")
    if level.device.type == "cpu" and not bool(((level >= 0) & (level <= 1)).all()):
        raise ValueError(f"augmentation_level must lie in [0, 1] (0: the clean low-res image, 1: pure noise), got "
                         f"values from {float(level.min()):.3g} to {float(level.max()):.3g}")
    return level.to(device)


def noise_augment(low_res: torch.Tensor, augmentation_level: float | torch.Tensor,
                  noise: torch.Tensor) -> torch.Tensor:
    """The forward process at level s: sqrt(alpha_bar(s)) low_res + sqrt(1 - alpha_bar(s)) noise.

    low_res, noise: (B, C, h, w); augmentation_level: s in [0, 1], one number or (B,). Returns (B, C, h, w);
    s = 0 returns low_res unchanged.
    """
    check_float_tensor(low_res, "low_res")
    if check_float_tensor(noise, "noise").shape != low_res.shape:
        raise ValueError(f"noise must have low_res's shape {tuple(low_res.shape)}, got {tuple(noise.shape)}; "
                         f"draw it with torch.randn_like(low_res)")
    level = check_augmentation_level(augmentation_level, low_res.shape[0], torch.device("cpu"))  # no GPU sync
    abar = augmentation_alpha_bar(level).to(low_res.device, low_res.dtype)  # (B,)
    abar = append_dims(abar, low_res.ndim)  # (B, 1, 1, 1)
    return abar.sqrt() * low_res + (1 - abar).sqrt() * noise


@dataclass(frozen=True)
class UpsamplerConfig:
    """The U-Net behind an ``Upsampler``. It reads 2C channels (the noisy image and the enlarged low res) and
    writes C; it has no attention of any kind, so it is fully convolutional; ``unet.image_size`` is the
    size of the training crops (the model runs at any size divisible by 2**(levels - 1))."""

    unet: UNetConfig

    def __post_init__(self) -> None:
        if isinstance(self.unet, dict):  # as read back from a checkpoint's JSON
            object.__setattr__(self, "unet", UNetConfig(**self.unet))
        if not isinstance(self.unet, UNetConfig):
            raise TypeError(f"UpsamplerConfig needs a UNetConfig, got {type(self.unet).__name__}")
        u = self.unet
        if u.in_channels != 2 * u.out_channels:
            raise ValueError(f"an upsampler reads the noisy image and the enlarged low res, 2 x {u.out_channels} "
                             f"channels: set in_channels={2 * u.out_channels} (got {u.in_channels})")
        if u.mid_attention or u.attention_resolutions or u.context_dim is not None:
            raise ValueError("an upsampler is fully convolutional, so it runs at any size: build its UNetConfig "
                             "with mid_attention=False, attention_resolutions=() and no context_dim")
        if u.num_classes is not None:
            raise ValueError("an upsampler's condition is the low-res picture: build its UNetConfig with "
                             "num_classes=None")

    @property
    def channels(self) -> int:
        """C, the channels of the pictures (3 for RGB)."""
        return self.unet.out_channels

    @classmethod
    def tiny(cls) -> UpsamplerConfig:
        """For tests: ``UNetConfig.tiny``'s widths (16, 32, 32), RGB, trained on 16x16 crops."""
        return cls(UNetConfig(in_channels=6, out_channels=3, image_size=16, base_channels=16,
                              channel_mults=(1, 2, 2), num_groups=4, num_heads=2, mid_attention=False))

    @classmethod
    def scenes(cls) -> UpsamplerConfig:
        """32 -> 64 (and 64 -> 128) for chapters 10-11: widths (32, 64, 64), trained on 32x32 crops of 64x64
        pictures (DALL-E 2 trains its upsamplers on crops a quarter of the target's area)."""
        return cls(UNetConfig(in_channels=6, out_channels=3, image_size=32, channel_mults=(1, 2, 2),
                              mid_attention=False))


class Upsampler(nn.Module):
    """eps_theta(x_t, t, low_res, s): x_t (B, C, H, W), t (B,), low_res (B, C, H/2, W/2), s -> eps_pred like x_t."""

    def __init__(self, config: UpsamplerConfig) -> None:
        super().__init__()
        if not isinstance(config, UpsamplerConfig):
            raise TypeError(f"config must be an UpsamplerConfig, got {type(config).__name__}")
        self.config = config
        self.unet = UNet(config.unet)
        self.level_embed = TimestepEmbedding(config.unet.base_channels, config.unet.time_embed_dim)

    def forward(self, xt: torch.Tensor, t: torch.Tensor, low_res: torch.Tensor,
                augmentation_level: float | torch.Tensor) -> torch.Tensor:
        """The noise in the high-res xt at steps t, given ``low_res``, already noised to ``augmentation_level``.

        augmentation_level: s in [0, 1], one number or (B,); 0 for a clean low_res. It has no default: a
        model trained with augmentation must be told the level it is given (``noise_augment`` applies one).
        """
        self._check_images(xt, low_res)
        level = check_augmentation_level(augmentation_level, xt.shape[0], xt.device)
        h = torch.cat([xt, enlarge(low_res.to(xt.dtype))], dim=1)  # (B, 2C, H, W): noisy image first
        extra_emb = self.level_embed(level * LEVEL_SCALE)  # (B, time_embed_dim)
        return self.unet(h, t, extra_emb=extra_emb)  # (B, C, H, W)

    def _check_images(self, xt: torch.Tensor, low_res: torch.Tensor) -> None:
        C = self.config.channels
        if not isinstance(xt, torch.Tensor) or xt.ndim != 4 or xt.shape[1] != C:
            got = tuple(xt.shape) if isinstance(xt, torch.Tensor) else type(xt).__name__
            raise ValueError(f"xt must be the noisy high-res images (B, {C}, H, W), got {got}")
        B, _, H, W = xt.shape
        halvings = len(self.config.unet.channel_mults) - 1
        factor = max(2, 2**halvings)  # the low res is half of H x W; the U-Net halves H x W `halvings` times
        if H % factor or W % factor:
            raise ValueError(f"H and W must be divisible by {factor} (the low res is half of them, and the U-Net "
                             f"halves them {halvings} times), got {H}x{W}")
        if not isinstance(low_res, torch.Tensor) or tuple(low_res.shape) != (B, C, H // 2, W // 2):
            got = tuple(low_res.shape) if isinstance(low_res, torch.Tensor) else type(low_res).__name__
            raise ValueError(f"low_res must be ({B}, {C}, {H // 2}, {W // 2}): {C} channels at half of xt's "
                             f"{H}x{W}, got {got}")
        check_float_tensor(low_res, "low_res")

