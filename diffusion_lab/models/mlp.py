"""An MLP denoiser for 2-D points: eps_theta(x_t, t) for the toy data sets (chapters 04 and 09).

The smallest network that shows the whole training loop: points (B, 2) and steps (B,) in, predicted
noise (B, 2) out. The step enters as a sinusoidal embedding (``embeddings.py``), added before every
activation, so each layer knows how noisy its input is. It learns the swiss roll in well under a
minute on a laptop CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from diffusion_lab.models.embeddings import TimestepEmbedding
from diffusion_lab.tensors import check_int, check_model_input


@dataclass(frozen=True)
class MLPConfig:
    """``data_dim`` values per point, ``num_layers`` hidden layers of ``hidden_dim`` units, and
    ``sinusoidal_dim`` sine/cosine features of t. The default has 273 k parameters: narrower MLPs
    train faster but blur the swiss roll's outer arm."""

    data_dim: int = 2
    hidden_dim: int = 256
    num_layers: int = 4
    sinusoidal_dim: int = 32

    def __post_init__(self) -> None:
        for name in ("data_dim", "hidden_dim", "num_layers"):
            check_int(getattr(self, name), name, low=1)
        check_int(self.sinusoidal_dim, "sinusoidal_dim", low=2)


class MLPDenoiser(nn.Module):
    """x (B, data_dim), t (B,) -> eps_pred (B, data_dim): ``num_layers`` x (Linear, + time, SiLU), Linear."""

    def __init__(self, config: MLPConfig | None = None) -> None:
        super().__init__()
        config = MLPConfig() if config is None else config
        if not isinstance(config, MLPConfig):
            raise TypeError(f"config must be an MLPConfig, got {type(config).__name__}")
        self.config = c = config
        self.time_embed = TimestepEmbedding(c.sinusoidal_dim, c.hidden_dim)
        self.layers = nn.ModuleList(
            nn.Linear(c.data_dim if i == 0 else c.hidden_dim, c.hidden_dim) for i in range(c.num_layers)
        )
        self.out = nn.Linear(c.hidden_dim, c.data_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: None = None) -> torch.Tensor:
        """x (B, data_dim) points noised to steps t (B,) -> eps_pred (B, data_dim). The model is
        unconditional: ``cond`` is there for the common signature ``model(xt, t, cond)`` and must be None."""
        if cond is not None:
            raise ValueError("the MLP denoiser is unconditional: call it as model(xt, t)")
        check_model_input(x, t, self.out.weight, (self.config.data_dim,))
        emb = self.time_embed(t)  # (B, H)
        h = x
        for layer in self.layers:
            h = F.silu(layer(h) + emb)  # (B, H): the step is added again at every layer
        return self.out(h)  # (B, data_dim)
