"""Noise schedules and the closed-form forward process q(x_t | x_0) (chapters 01 and 02).

Notation (Ho et al. 2020, with steps counted from 0 in code where the paper counts from 1):

    betas[t]       beta_t         variance of the noise added at step t
    alphas[t]      alpha_t        1 - beta_t
    alpha_bars[t]  alpha-bar_t    prod_{s<=t} alpha_s: how much of x_0 survives to step t

The beta schedules are pure functions computed in float64; ``NoiseSchedule`` freezes one of them
into float32 tensors, the dtype models compute in. Names and defaults match diffusers'
``DDPMScheduler(beta_schedule=...)`` so the tests can compare the two.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import torch

from diffusion_lab.tensors import append_dims, check_float_tensor


def _check_T(T: object) -> int:
    if isinstance(T, bool) or not isinstance(T, int):
        raise TypeError(f"T (the number of diffusion steps) must be an int, got {type(T).__name__}")
    if T <= 0:
        raise ValueError(f"T (the number of diffusion steps) must be positive, got {T}; 1000 is the usual choice")
    return T


def _check_beta_range(beta_start: float, beta_end: float) -> None:
    if not 0.0 < beta_start <= beta_end < 1.0:
        raise ValueError(
            f"need 0 < beta_start <= beta_end < 1, got beta_start={beta_start}, beta_end={beta_end}"
        )


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """DDPM's schedule (Ho et al. 2020, sec. 4): betas rise linearly. Returns float64 (T,)."""
    _check_T(T)
    _check_beta_range(beta_start, beta_end)
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def scaled_linear_betas(T: int, beta_start: float = 0.00085, beta_end: float = 0.012) -> torch.Tensor:
    """Stable Diffusion's schedule: sqrt(beta) rises linearly. Returns float64 (T,)."""
    _check_T(T)
    _check_beta_range(beta_start, beta_end)
    return torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float64) ** 2


def sigmoid_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Sigmoid-shaped betas (GeoDiff, Xu et al. 2022): slow at both ends. Returns float64 (T,)."""
    _check_T(T)
    _check_beta_range(beta_start, beta_end)
    return torch.sigmoid(torch.linspace(-6, 6, T, dtype=torch.float64)) * (beta_end - beta_start) + beta_start


def cosine_alpha_bar(u: torch.Tensor, s: float = 0.008) -> torch.Tensor:
    """Nichol & Dhariwal 2021, eq. 17 (unnormalised): f(u) = cos^2((u + s) / (1 + s) * pi / 2), u = t / T."""
    return torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Improved DDPM's cosine schedule (Nichol & Dhariwal 2021, eq. 17). Returns float64 (T,).

    alpha_bar follows a cosine; beta_t = 1 - alpha_bar(t+1) / alpha_bar(t), clipped at
    ``max_beta`` so the last step does not destroy everything at once.
    """
    _check_T(T)
    if not 0.0 < max_beta < 1.0:
        raise ValueError(f"max_beta must be in (0, 1), got {max_beta}")
    u = torch.arange(T + 1, dtype=torch.float64) / T
    f = cosine_alpha_bar(u, s)
    return torch.clamp(1 - f[1:] / f[:-1], max=max_beta)


BETA_SCHEDULES: dict[str, Callable[[int], torch.Tensor]] = {
    "linear": linear_betas,
    "scaled_linear": scaled_linear_betas,
    "cosine": cosine_betas,
    "sigmoid": sigmoid_betas,
}

# diffusers' name for each schedule, for the tests and for chapter 05's comparison.
DIFFUSERS_NAMES = {
    "linear": "linear",
    "scaled_linear": "scaled_linear",
    "cosine": "squaredcos_cap_v2",
    "sigmoid": "sigmoid",
}


def make_betas(name: str, T: int, **kwargs: float) -> torch.Tensor:
    """The float64 betas of the schedule called ``name`` (one of ``BETA_SCHEDULES``)."""
    if name not in BETA_SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(BETA_SCHEDULES)}")
    return BETA_SCHEDULES[name](T, **kwargs)


@dataclass(frozen=True)
class NoiseSchedule:
    """One frozen noise schedule: betas, alphas and alpha_bars as float32 tensors of shape (T,).

    Build one with ``NoiseSchedule.from_name("cosine", T=1000)`` or ``NoiseSchedule.from_betas(b)``.
    Step indices t run from 0 (barely noised) to T - 1 (almost pure noise).
    """

    name: str
    betas: torch.Tensor
    alphas: torch.Tensor
    alpha_bars: torch.Tensor

    @classmethod
    def from_betas(cls, betas: torch.Tensor, name: str = "custom") -> NoiseSchedule:
        """Freeze a beta schedule; alpha_bars = cumprod(1 - betas) is computed in float64."""
        betas = check_float_tensor(betas, "betas")
        if betas.ndim != 1 or betas.numel() == 0:
            raise ValueError(f"betas must be a non-empty 1-D tensor, got shape {tuple(betas.shape)}")
        b64 = betas.detach().to("cpu", torch.float64)
        if not bool(((b64 > 0) & (b64 < 1)).all()):
            raise ValueError("every beta must lie strictly between 0 and 1")
        alphas = 1.0 - b64
        alpha_bars = torch.cumprod(alphas, dim=0)
        return cls(name, b64.float(), alphas.float(), alpha_bars.float())

    @classmethod
    def from_name(cls, name: str, T: int = 1000, **kwargs: float) -> NoiseSchedule:
        """The schedule called ``name`` ("linear", "scaled_linear", "cosine" or "sigmoid") with T steps."""
        return cls.from_betas(make_betas(name, T, **kwargs), name=name)

    @property
    def T(self) -> int:
        """The number of diffusion steps."""
        return self.betas.shape[0]

    @property
    def device(self) -> torch.device:
        return self.betas.device

    def to(self, device: torch.device | str) -> NoiseSchedule:
        """A copy of this schedule with its tensors on ``device``."""
        return dataclasses.replace(
            self,
            betas=self.betas.to(device),
            alphas=self.alphas.to(device),
            alpha_bars=self.alpha_bars.to(device),
        )

    def check_t(self, t: int | torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
        """Validate step indices and return them as an int64 tensor (0-d for an int, else (B,)).

        Raises a clear error for float steps, and for steps outside 0..T-1 given as ints or CPU tensors
        (steps already on a GPU are left to the indexing's own check: reading them back would stall it).
        """
        if isinstance(t, bool):
            raise TypeError("t must be an int or an integer tensor, got a bool")
        if isinstance(t, numbers.Integral):  # a Python or NumPy integer
            t = torch.tensor(int(t))
        elif isinstance(t, torch.Tensor):
            if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
                raise TypeError(
                    f"t must hold integer step indices, got dtype {t.dtype}; use t.long() "
                    f"(or torch.randint for random steps)"
                )
            if t.ndim > 1:
                raise ValueError(f"t must be a scalar or a 1-D tensor of steps, got shape {tuple(t.shape)}")
        else:
            raise TypeError(f"t must be an int or an integer tensor, got {type(t).__name__}")
        t = t.long()
        # Reading values back from a GPU stalls it, so steps already on one are left to the indexing's own check.
        if t.numel() and t.device.type == "cpu" and (int(t.min()) < 0 or int(t.max()) >= self.T):
            raise ValueError(
                f"t must lie in 0..{self.T - 1} (this schedule has T={self.T} steps, counted from 0), "
                f"got values from {int(t.min())} to {int(t.max())}"
            )
        return t.to(device if device is not None else self.device)

    def _coeff(self, values: torch.Tensor, t: int | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """values[t], shaped to broadcast against ``like`` (batch first), on its device and dtype."""
        t = self.check_t(t, device=values.device)
        if t.ndim == 1 and like.ndim > 0 and t.shape[0] not in (1, like.shape[0]):
            raise ValueError(
                f"t has {t.shape[0]} steps but the batch has {like.shape[0]} samples; "
                f"give one step per sample or a single int"
            )
        c = values[t].to(device=like.device, dtype=like.dtype)
        return append_dims(c, like.ndim) if c.ndim == 1 else c

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """Sample x_t from q(x_t | x_0) in one go, the closed form (DDPM eq. 4).

        x_t = sqrt(alpha_bar_t) * x_0 + sqrt(1 - alpha_bar_t) * eps

        x0, eps: (B, ...) with the same shape; t: an int or (B,) int64 steps in 0..T-1.
        Returns x_t with x0's shape, dtype and device.
        """
        x0 = check_float_tensor(x0, "x0")
        eps = check_float_tensor(eps, "eps")
        if x0.shape != eps.shape:
            raise ValueError(
                f"x0 and eps must have the same shape, got {tuple(x0.shape)} and {tuple(eps.shape)}; "
                f"draw eps with torch.randn_like(x0)"
            )
        alpha_bar = self._coeff(self.alpha_bars, t, x0)
        return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps

    def _alpha_bar64(self, t: int | torch.Tensor) -> torch.Tensor:
        """alpha_bar_t in float64, computed on the CPU (Apple's MPS has no float64)."""
        return self.alpha_bars.cpu().double()[self.check_t(t, device=torch.device("cpu"))]

    def snr(self, t: int | torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio SNR(t) = alpha_bar_t / (1 - alpha_bar_t) (Kingma et al. 2021), float32 on
        the schedule's device."""
        alpha_bar = self._alpha_bar64(t)
        return (alpha_bar / (1 - alpha_bar)).float().to(self.device)

    def log_snr(self, t: int | torch.Tensor) -> torch.Tensor:
        """log SNR(t), the natural-log signal-to-noise ratio; falls as t grows. float32 on the schedule's device."""
        alpha_bar = self._alpha_bar64(t)
        return (torch.log(alpha_bar) - torch.log1p(-alpha_bar)).float().to(self.device)

    def __repr__(self) -> str:
        return (
            f"NoiseSchedule(name={self.name!r}, T={self.T}, beta {float(self.betas[0]):.2e}->"
            f"{float(self.betas[-1]):.2e}, alpha_bar_T-1={float(self.alpha_bars[-1]):.2e}, device={self.device})"
        )
