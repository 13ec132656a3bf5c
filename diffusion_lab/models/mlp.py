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


@dataclass(frozen=True)
class MLPConfig:
    """``data_dim`` values per point, ``num_layers`` hidden layers of ``hidden_dim`` units, and
    ``sinusoidal_dim`` sine/cosine features of t. The default (273 k parameters) turns the swiss roll's
    3000 training steps of 512 points into crisp samples in about 30 s on 2 CPU cores; width 128
    trains 3x faster but leaves the outer arm blurred."""

    data_dim: int = 2
    hidden_dim: int = 256
    num_layers: int = 4
    sinusoidal_dim: int = 32

    def __post_init__(self) -> None:
        for name in ("data_dim", "hidden_dim", "num_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if isinstance(self.sinusoidal_dim, bool) or not isinstance(self.sinusoidal_dim, int) or self.sinusoidal_dim < 2:
            raise ValueError(f"sinusoidal_dim must be an int >= 2, got {self.sinusoidal_dim!r}")


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

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self._check_inputs(x, t)
        emb = self.time_embed(t)  # (B, H)
        h = x
        for layer in self.layers:
            h = F.silu(layer(h) + emb)  # (B, H): the step is added again at every layer
        return self.out(h)  # (B, data_dim)

    def _check_inputs(self, x: torch.Tensor, t: torch.Tensor) -> None:
        d = self.config.data_dim
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != d:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be a tensor of points with shape (B, {d}), got {got}")
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}; use x.float()")
        weight = self.out.weight
        if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
            raise TypeError(f"x has dtype {x.dtype} but the model's parameters are {weight.dtype}; "
                            f"convert one of them, e.g. x.to({weight.dtype}) or model.to({x.dtype})")
        if not isinstance(t, torch.Tensor) or t.shape != (x.shape[0],):
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"t must be a tensor of shape (B,) = ({x.shape[0]},), one step per point, got {got}; "
                             "for one step for all, use torch.full((B,), t)")
