"""A small convolutional autoencoder with a Gaussian latent: the first stage of latent diffusion (chapter 08).

    x (B, C, H, W) --encoder E--> mean, log-variance (B, c, H/f, W/f) --sample z--> decoder D --> x_hat

The encoder halves the picture ``len(channel_mults) - 1`` times with stride-2 convolutions, so the
downsampling factor is f = 2**(levels - 1), and ends in 2c channels: a mean and a log-variance per latent
value. Training samples z = mean + std * noise (the reparameterisation trick, Kingma & Welling 2014) and
adds a small KL term that pulls each latent towards N(0, 1): Rombach et al. 2022's "KL-regularised"
autoencoder. The blocks are the U-Net's ResBlocks without a time embedding; there are no skip
connections from E to D, so everything D knows passes through the small latent.

``latent_scale`` (the s of latent diffusion) is a buffer saved with the weights: NaN until
``latent.measure_latent_scale`` sets it, and read only by ``latent.encode`` / ``latent.decode``.

MNIST's 28 x 28 gives a 7 x 7 latent at f = 4, which a U-Net cannot halve twice, so digits are padded
to 32 x 32 (with the background value, -1) before E and cropped back after D: an 8 x 8 latent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from diffusion_lab.models.blocks import Downsample, ResBlock, Upsample
from diffusion_lab.tensors import check_int, check_int_tuple, check_levels


@dataclass(frozen=True)
class AutoencoderConfig:
    """What an ``Autoencoder`` looks like. ``channel_mults`` sets the levels (f = 2**(levels - 1));
    ``latent_channels`` is c, the channels of the latent z (B, c, padded_size / f, padded_size / f).
    ``pad_to``: pad pictures to this side first (with ``pad_value``), e.g. 28 -> 32 so that the latent is
    8 x 8 and a U-Net over it can halve it twice; None keeps ``image_size``."""

    in_channels: int = 1
    image_size: int = 28
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)
    latent_channels: int = 4
    num_res_blocks: int = 1
    num_groups: int = 8
    pad_to: int | None = None
    pad_value: float = -1.0

    @classmethod
    def tiny(cls) -> AutoencoderConfig:
        """For tests: MNIST-shaped, a few seconds to train, blurry."""
        return cls(base_channels=8, num_groups=4, pad_to=32)

    @classmethod
    def mnist(cls) -> AutoencoderConfig:
        """1 x 28 x 28 digits, padded to 32 -> a 4 x 8 x 8 latent (f = 4): 256 numbers for 784 pixels."""
        return cls(base_channels=16, channel_mults=(1, 2, 4), pad_to=32)

    @classmethod
    def shapes64(cls) -> AutoencoderConfig:
        """3 x 64 x 64 shapes -> a 4 x 16 x 16 latent (f = 4), the first stage of chapter 11. Narrow at 64 x 64
        (16 channels), where a convolution costs the most, wider below (32 and 64)."""
        return cls(in_channels=3, image_size=64, base_channels=16, channel_mults=(1, 2, 4))

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_mults", check_int_tuple(self.channel_mults, "channel_mults"))
        if not self.channel_mults:
            raise ValueError("channel_mults must be a non-empty tuple of positive ints, got ()")
        for name in ("in_channels", "image_size", "base_channels", "latent_channels", "num_res_blocks", "num_groups"):
            check_int(getattr(self, name), name, low=1)
        if self.pad_to is not None:
            check_int(self.pad_to, "pad_to", low=self.image_size)
        if isinstance(self.pad_value, bool) or not isinstance(self.pad_value, int | float) or not math.isfinite(
                self.pad_value):
            raise ValueError(f"pad_value must be a finite number (the data's background, -1), got {self.pad_value!r}")
        check_levels(self.padded_size, len(self.channel_mults), self.channels, self.num_groups)

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels at each level, e.g. (32, 64, 64)."""
        return tuple(self.base_channels * m for m in self.channel_mults)

    @property
    def factor(self) -> int:
        """f: how many pixels of the (padded) picture one latent position stands for, along each side."""
        return 2 ** (len(self.channel_mults) - 1)

    @property
    def padded_size(self) -> int:
        """The side the encoder sees: ``pad_to``, or image_size."""
        return self.pad_to if self.pad_to is not None else self.image_size

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(c, h, w) of one latent, e.g. (4, 8, 8)."""
        side = self.padded_size // self.factor
        return (self.latent_channels, side, side)


class DiagonalGaussian:
    """q(z | x) = N(mean, diag(exp(logvar))), one per picture: mean and logvar (B, c, h, w)."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor) -> None:
        self.mean = mean
        self.logvar = logvar.clamp(-30.0, 20.0)  # as Rombach et al.: keeps exp() finite early in training

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """z = mean + std * noise, the reparameterised sample (gradients flow to mean and std). (B, c, h, w)

        noise: N(0, I) shaped like the mean, or None to draw it from ``generator`` (a CPU generator is fine)."""
        if noise is None:
            noise = torch.randn(self.mean.shape, generator=generator,
                                device=generator.device if generator is not None else self.mean.device)
        return self.mean + self.std * noise.to(self.mean.device, self.mean.dtype)

    def kl(self) -> torch.Tensor:
        """KL(q(z | x) || N(0, I)) per picture, summed over latent values: (B,)."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar).flatten(1).sum(1)


class Encoder(nn.Module):
    """E: pictures (B, C, H, W) -> the parameters of q(z | x), (B, 2c, H/f, W/f) (means, then log-variances)."""

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        c, ch = config, config.channels
        self.conv_in = nn.Conv2d(c.in_channels, ch[0], 3, padding=1)
        blocks: list[nn.Module] = []
        prev = ch[0]
        for i, width in enumerate(ch):
            for _ in range(c.num_res_blocks):
                blocks.append(ResBlock(prev, width, None, c.num_groups))
                prev = width
            if i < len(ch) - 1:
                blocks.append(Downsample(width, width))
        blocks.append(ResBlock(prev, prev, None, c.num_groups))  # the middle, at the latent's resolution
        self.blocks = nn.Sequential(*blocks)
        self.norm_out = nn.GroupNorm(c.num_groups, prev)
        self.conv_out = nn.Conv2d(prev, 2 * c.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.conv_in(x))  # (B, ch[-1], H/f, W/f)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, 2c, H/f, W/f)


class Decoder(nn.Module):
    """D: latents (B, c, h, w) -> pictures (B, C, h * f, w * f), the encoder's path in reverse."""

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        c, ch = config, config.channels
        self.conv_in = nn.Conv2d(c.latent_channels, ch[-1], 3, padding=1)
        blocks: list[nn.Module] = [ResBlock(ch[-1], ch[-1], None, c.num_groups)]
        prev = ch[-1]
        for i in reversed(range(len(ch))):
            for _ in range(c.num_res_blocks):
                blocks.append(ResBlock(prev, ch[i], None, c.num_groups))
                prev = ch[i]
            if i > 0:
                blocks.append(Upsample(prev, prev))
        self.blocks = nn.Sequential(*blocks)
        self.norm_out = nn.GroupNorm(c.num_groups, prev)
        self.conv_out = nn.Conv2d(prev, c.in_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.conv_out(F.silu(self.norm_out(self.blocks(self.conv_in(z)))))  # (B, C, h f, w f)


class Autoencoder(nn.Module):
    """E and D with a Gaussian latent. ``posterior(x)`` gives q(z | x) for pictures (B, C, image_size,
    image_size) in [-1, 1]; ``reconstruct(z)`` gives pictures back from *unscaled* latents; ``forward``
    returns (x_hat, q(z | x)) for training. Latent diffusion goes through ``latent.encode`` / ``decode``."""

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        # s, measured after training (latent.measure_latent_scale) and saved with the weights; NaN means "not yet".
        self.register_buffer("latent_scale", torch.tensor(float("nan")))

    def _check(self, x: torch.Tensor) -> None:
        c = self.config
        want = (c.in_channels, c.image_size, c.image_size)
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != want:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"the autoencoder takes pictures shaped (B, {', '.join(map(str, want))}), got {got}")

    def posterior(self, x: torch.Tensor) -> DiagonalGaussian:
        """q(z | x) for pictures x (B, C, H, W); its mean and logvar are (B, c, h, w), unscaled."""
        self._check(x)
        pad = (self.config.padded_size - self.config.image_size) // 2
        extra = self.config.padded_size - self.config.image_size - pad
        if pad or extra:
            x = F.pad(x, (pad, extra, pad, extra), value=self.config.pad_value)
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return DiagonalGaussian(mean, logvar)

    def reconstruct(self, z: torch.Tensor) -> torch.Tensor:
        """D(z) for unscaled latents z (B, c, h, w): pictures (B, C, image_size, image_size), unclipped."""
        want = self.config.latent_shape
        if not isinstance(z, torch.Tensor) or z.ndim != 4 or tuple(z.shape[1:]) != want:
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"the decoder takes latents shaped (B, {', '.join(map(str, want))}), got {got}")
        x = self.decoder(z)
        pad = (self.config.padded_size - self.config.image_size) // 2
        return x[..., pad:pad + self.config.image_size, pad:pad + self.config.image_size]

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, DiagonalGaussian]:
        """Training's pass: (x_hat (B, C, H, W), q(z | x)), decoding a reparameterised sample of q (with
        ``noise`` (B, c, h, w) if given, else noise from ``generator``)."""
        q = self.posterior(x)
        return self.reconstruct(q.sample(noise, generator)), q
