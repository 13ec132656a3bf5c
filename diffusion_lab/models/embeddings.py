"""Sinusoidal timestep embeddings: how a network is told which noise level it is looking at (chapter 03).

The denoiser eps_theta(x_t, t) is one network for every step t, so t has to enter it as a vector.
DDPM (Ho et al. 2020, appendix B) borrows the Transformer's positional encoding (Vaswani et al. 2017,
sec. 3.5): with half = dim // 2 frequencies

    freq_i   = max_period ** (-i / half)                     i = 0 .. half-1
    emb(t)   = [sin(t * freq_0), ..., sin(t * freq_{half-1}),
                cos(t * freq_0), ..., cos(t * freq_{half-1})]

The first frequencies change fast with t (they tell neighbouring steps apart), the last ones slowly
(they say roughly where in the chain t is). Every entry lies in [-1, 1]. ``TimestepEmbedding`` follows
it with a small MLP, so each block of the U-Net can read what it needs from the result.

This is diffusers' ``get_timestep_embedding(..., flip_sin_to_cos=False, downscale_freq_shift=0)``: sin
first, then cos. guided-diffusion uses the same frequencies with cos first; DDPM's original code puts sin
first but divides the exponent by half - 1 instead of half (chapter 03 compares them).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Embed timesteps ``t`` of shape (B,) (int or float) as (B, dim) sines and cosines (formula above).

    An odd ``dim`` gets one trailing zero column, so the output always has ``dim`` columns.
    The result is float64 when ``t`` is float64 and float32 otherwise (half-precision ``t`` is computed
    in float32: large timesteps times high frequencies need the precision).
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be a torch.Tensor of shape (B,), got {type(t).__name__}; use torch.as_tensor(t)")
    if t.ndim != 1:
        raise ValueError(f"t must be 1-D with shape (B,), one timestep per sample; got shape {tuple(t.shape)}")
    if t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"t must hold integer or real timesteps, got dtype {t.dtype}")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2:
        raise ValueError(f"dim must be an int >= 2, got {dim!r}")
    if not max_period > 0:
        raise ValueError(f"max_period must be positive, got {max_period}")
    dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    half = dim // 2
    exponents = torch.arange(half, device=t.device, dtype=dtype) / half  # (half,) i / half
    freqs = torch.exp(-math.log(max_period) * exponents)  # (half,) max_period ** (-i / half)
    args = t.to(dtype)[:, None] * freqs[None, :]  # (B, half)
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)  # (B, 2 * half)
    if dim % 2 == 1:
        emb = nn.functional.pad(emb, (0, 1))  # (B, dim): a zero column for an odd dim
    return emb


class TimestepEmbedding(nn.Module):
    """t (B,) -> sinusoidal features (B, sinusoidal_dim) -> Linear -> SiLU -> Linear -> (B, embed_dim)."""

    def __init__(self, sinusoidal_dim: int, embed_dim: int, max_period: float = 10000.0) -> None:
        super().__init__()
        if sinusoidal_dim < 2 or embed_dim < 1:
            raise ValueError(f"need sinusoidal_dim >= 2 and embed_dim >= 1, got {sinusoidal_dim}, {embed_dim}")
        self.sinusoidal_dim = sinusoidal_dim
        self.max_period = max_period
        self.mlp = nn.Sequential(
            nn.Linear(sinusoidal_dim, embed_dim),
            nn.SiLU(),
            nn.Linear(embed_dim, embed_dim),
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        dtype = self.mlp[0].weight.dtype
        emb = timestep_embedding(t, self.sinusoidal_dim, self.max_period).to(dtype)  # (B, sinusoidal_dim)
        return self.mlp(emb)  # (B, embed_dim)
