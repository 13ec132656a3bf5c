"""The regression prior: the baseline the diffusion prior is compared against (chapter 10).

A deterministic MLP e_text -> e_image, trained with the mean squared error in the normalised units of
``EmbeddingScale`` (the same units and the same blocks as ``DiffusionPrior``). The best such map is the
conditional mean E[x_0 | e_text]: when one caption fits many pictures it answers the average of their
embeddings, which is no picture's embedding and is shorter than a unit vector. That collapse to the
mean is what the diffusion prior, which samples instead of averaging, avoids. It is the diffusion
prior's x_0 guess at t = T - 1, where x_t has no signal left; the MSE is that limit of the diffusion loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from diffusion_lab.models.prior import EmbeddingScale, MLPBlock
from diffusion_lab.tensors import check_int, check_model_input


@dataclass(frozen=True)
class RegressionPriorConfig:
    """What a ``RegressionPrior`` looks like: CLIP's ``embed_dim`` D and ``num_blocks`` residual MLP blocks
    of width ``hidden_dim``, as in ``PriorConfig``."""

    embed_dim: int = 64
    hidden_dim: int = 256
    num_blocks: int = 4

    def __post_init__(self) -> None:
        for name in ("embed_dim", "hidden_dim", "num_blocks"):
            check_int(getattr(self, name), f"RegressionPriorConfig.{name}", low=1)

    @classmethod
    def tiny(cls, embed_dim: int = 64) -> RegressionPriorConfig:
        return cls(embed_dim=embed_dim, hidden_dim=64, num_blocks=2)


class RegressionPrior(nn.Module):
    """e_text (B, D) -> the guess of x_0 (B, D) in the normalised units (``embedding_scale`` undoes them)."""

    def __init__(self, config: RegressionPriorConfig | None = None) -> None:
        super().__init__()
        config = RegressionPriorConfig() if config is None else config
        if not isinstance(config, RegressionPriorConfig):
            raise TypeError(f"config must be a RegressionPriorConfig, got {type(config).__name__}")
        self.config = c = config
        self.embedding_scale = EmbeddingScale(c.embed_dim)
        self.text_in = nn.Linear(c.embed_dim, c.hidden_dim)
        self.text_embed = nn.Linear(c.embed_dim, c.hidden_dim)
        self.blocks = nn.ModuleList(MLPBlock(c.hidden_dim, c.hidden_dim) for _ in range(c.num_blocks))
        self.out = nn.Sequential(nn.LayerNorm(c.hidden_dim), nn.Linear(c.hidden_dim, c.embed_dim))

    def forward(self, text_emb: torch.Tensor) -> torch.Tensor:
        """Text embeddings (B, D), unit vectors -> x_0 guesses (B, D), one per caption, the same every time."""
        D = self.config.embed_dim
        check_model_input(text_emb, None, self.text_in.weight, (D,))
        text = text_emb * math.sqrt(D)  # (B, D): unit vectors -> values of about unit size
        emb = F.silu(self.text_embed(text))  # (B, H): what every block reads, as DiffusionPrior's without time
        h = self.text_in(text)  # (B, H)
        for block in self.blocks:
            h = block(h, emb)  # (B, H)
        return self.out(h)  # (B, D)
