"""What every sampler shares (chapter 05): the guess of x_0, the step's return type, the timestep grid.

    predict_x0     x_0 guessed from x_t and eps_pred                       DDPM eq. 15
    StepOutput     what a scheduler step returns: prev_sample and pred_x0 (diffusers' shape)
    Scheduler      set_timesteps / timesteps / add_noise, the base of DDPMScheduler and DDIMScheduler

Steps are counted from 0 as in the code (the paper counts from 1). ``t_prev`` is the step the loop
visits next (t - 1 with all T steps, further back with fewer); ``t_prev = -1`` means "past the last
step", where alpha_bar = 1 (nothing noised).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.tensors import append_dims, check_float_tensor


@dataclass(frozen=True)
class StepOutput:
    """What every scheduler step returns: the next sample and the model's guess of x_0 at this step."""

    prev_sample: torch.Tensor  # x_{t_prev}, (B, ...)
    pred_x0: torch.Tensor  # predicted x_0 from x_t, (B, ...)

    @property
    def pred_original_sample(self) -> torch.Tensor:
        """diffusers' name for ``pred_x0``, so code written for diffusers' outputs reads ours too."""
        return self.pred_x0


def alpha_bar_at(schedule: NoiseSchedule, t: int | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """alpha_bar_t for t in -1..T-1 (alpha_bar_{-1} = 1), broadcastable against ``like`` (B, ...), on its
    device and dtype. ``t`` is an int (one step for the batch) or int64 (B,) (one step per sample)."""
    t = torch.as_tensor(t)
    before_start = t == -1
    t = schedule.check_t(torch.where(before_start, 0, t))  # clear errors for floats or steps out of range
    if t.ndim == 1 and t.shape[0] not in (1, like.shape[0]):
        raise ValueError(f"t has {t.shape[0]} steps but the batch has {like.shape[0]} samples")
    abar = torch.where(before_start.to(t.device), 1.0, schedule.alpha_bars[t])
    abar = abar.to(device=like.device, dtype=like.dtype)
    return append_dims(abar, like.ndim) if abar.ndim == 1 else abar


def check_pair(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    """Both float tensors of one shape, else a clear error naming them."""
    check_float_tensor(a, name_a)
    check_float_tensor(b, name_b)
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def predict_x0(
    schedule: NoiseSchedule,
    xt: torch.Tensor,
    eps_pred: torch.Tensor,
    t: int | torch.Tensor,
    clip: bool = False,
    clip_range: float = 1.0,
) -> torch.Tensor:
    """The model's guess of x_0: DDPM eq. 4 solved for x_0 (eq. 15 of Ho et al. 2020).

    pred_x0 = (x_t - sqrt(1 - abar_t) * eps_pred) / sqrt(abar_t)

    xt, eps_pred: (B, ...); t: an int or int64 (B,). ``clip=True`` clamps the guess to [-clip_range,
    clip_range], the range of the training data (diffusers' ``clip_sample`` and ``clip_sample_range``).
    Near t = T - 1 the division by sqrt(abar_t) (about 5e-5 at the cosine schedule's last step) turns a
    tiny error in eps_pred into a huge one, so samplers clip by default. Returns (B, ...) like xt.
    """
    check_pair(eps_pred, xt, "eps_pred", "xt")
    abar_t = alpha_bar_at(schedule, t, xt)
    x0 = (xt - (1 - abar_t).sqrt() * eps_pred) / abar_t.sqrt()
    return x0.clamp(-clip_range, clip_range) if clip else x0


def randn(
    shape: Sequence[int], generator: torch.Generator | None, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """N(0, I) noise drawn on the generator's device (CPU without one) and then moved, like diffusers'
    ``randn_tensor``: a CPU generator gives the same numbers whether sampling runs on CPU, CUDA or MPS."""
    rand_device = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(tuple(shape), generator=generator, device=rand_device, dtype=dtype).to(device)


class Scheduler:
    """What both schedulers share: the timestep grid, the step checks and ``add_noise``."""

    def __init__(self, schedule: NoiseSchedule, clip_sample: bool, clip_sample_range: float) -> None:
        if not isinstance(schedule, NoiseSchedule):
            raise TypeError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
        if isinstance(clip_sample_range, bool) or not isinstance(clip_sample_range, (int, float)) \
                or not clip_sample_range > 0:
            raise ValueError(f"clip_sample_range must be a positive number (the data's largest |value|), "
                             f"got {clip_sample_range!r}")
        self.schedule = schedule
        self.clip_sample = bool(clip_sample)
        self.clip_sample_range = float(clip_sample_range)
        self.num_inference_steps: int | None = None
        self._timesteps: torch.Tensor | None = None
        self._prev: dict[int, int] = {}  # t -> t_prev, the step visited after t (-1 after the last)

    def set_timesteps(self, num_inference_steps: int | None = None) -> None:
        """Choose K = ``num_inference_steps`` steps (default: all T) with diffusers' "leading" spacing:
        timesteps = (K-1) r, ..., r, 0 with r = T // K. With K not dividing T the first step is below T-1."""
        T = self.schedule.T
        K = T if num_inference_steps is None else num_inference_steps
        if isinstance(K, bool) or not isinstance(K, int):
            raise TypeError(f"num_inference_steps must be an int, got {type(K).__name__}")
        if not 1 <= K <= T:
            raise ValueError(f"num_inference_steps must be between 1 and T={T} (the schedule's T), got {K}")
        self.num_inference_steps = K
        self._timesteps = (torch.arange(K, dtype=torch.int64) * (T // K)).flip(0)  # int64 (K,), descending
        ts = self._timesteps.tolist()
        self._prev = dict(zip(ts, ts[1:] + [-1]))

    @property
    def timesteps(self) -> torch.Tensor:
        """The steps the loop visits, int64 (K,) on the CPU, from noisiest to t = 0."""
        if self._timesteps is None:
            raise RuntimeError(f"call {type(self).__name__}.set_timesteps(num_inference_steps) first")
        return self._timesteps

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """The forward process q(x_t | x_0) (DDPM eq. 4), as in diffusers' schedulers."""
        return self.schedule.add_noise(x0, eps, t)

    def _check_step(self, eps_pred: torch.Tensor, t: int | torch.Tensor, xt: torch.Tensor) -> tuple[int, int]:
        """Validate a step's inputs; return (t, t_prev) as ints."""
        timesteps = self.timesteps  # raises when set_timesteps was never called
        check_pair(eps_pred, xt, "eps_pred", "xt")
        if isinstance(t, torch.Tensor) and t.numel() != 1:
            raise ValueError(f"a scheduler step takes one t for the whole batch, got shape {tuple(t.shape)}")
        # an int t is checked on the CPU; a tensor t on a GPU costs one read, as in diffusers
        t = int(self.schedule.check_t(t.reshape(()) if isinstance(t, torch.Tensor) else t, device=torch.device("cpu")))
        if t not in self._prev:
            shown = timesteps.tolist()
            raise ValueError(
                f"t={t} is not one of this scheduler's timesteps ({shown[:3]} ... {shown[-2:]}, "
                f"{len(shown)} steps); step through scheduler.timesteps"
            )
        return t, self._prev[t]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.schedule!r}, num_inference_steps={self.num_inference_steps})"


