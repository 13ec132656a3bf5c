"""The sampling loop: start from noise, call the model, step, report to a callback (chapter 05).

``sample`` is the same loop for every scheduler (ours or diffusers'); only ``scheduler.step`` differs.
Guidance (chapter 07) wraps the model into another callable with the same signature, so the loop
never changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from diffusion_lab.sampling.ddim import DDIMScheduler
from diffusion_lab.sampling.ddpm import DDPMScheduler
from diffusion_lab.sampling.scheduler import randn
from diffusion_lab.tensors import check_float_tensor

# model(xt, t_batch) -> eps_pred: xt (B, ...), t_batch int64 (B,); a denoiser with its condition bound
# (guidance.py), or an unconditional denoiser itself.
Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# callback(i, t, xt, pred_x0), called after step i (see `sample`).
Callback = Callable[[int, int, torch.Tensor, torch.Tensor], None]


@torch.no_grad()
def sample(
    model: Model,
    scheduler: DDPMScheduler | DDIMScheduler,
    shape: Sequence[int],
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    x_T: torch.Tensor | None = None,
    callback: Callback | None = None,
    start: int = 0,
) -> torch.Tensor:
    """Generate samples: Algorithm 2 of Ho et al. 2020 with a DDPMScheduler, DDIM (Song et al. 2021,
    eq. 12) with a DDIMScheduler. The loop is the same; only ``scheduler.step`` differs.

    model: any callable model(xt, t_batch) -> eps_pred, t_batch int64 (B,); guidance wraps it.
    scheduler: ours, or diffusers' DDPM/DDIM scheduler; call its ``set_timesteps`` first.
    shape: (B, ...), the shape of the samples.
    x_T: the starting noise. Without it, x_T ~ N(0, I) is drawn from ``generator`` on the CPU (float32)
        and moved to ``device``, so a seed gives the same samples on every device. Samples take x_T's
        device (``device`` when given) and dtype.
    generator: the only source of randomness, for x_T and for the noise of stochastic steps.
    callback: callback(i, t, xt, pred_x0) runs after step i = 0, 1, ..., the step from timestep t; xt
        is the new sample x_{t_prev} (after the last step, the final sample) and pred_x0 is the guess
        of x_0 made at t.
    start: skip the first ``start`` timesteps and begin at ``scheduler.timesteps[start]`` from ``x_T``, a
        sample already noised to that step (SDEdit, ``sdedit.py``); callback's i still counts from 0.
    Runs without gradients. Returns the samples, (B, ...).
    """
    if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start < len(scheduler.timesteps):
        raise ValueError(f"start must be an int from 0 to {len(scheduler.timesteps) - 1} (an index into "
                         f"scheduler.timesteps), got {start!r}")
    if x_T is None:
        x_T = randn(shape, generator, torch.float32, torch.device(device or "cpu"))
    else:
        check_float_tensor(x_T, "x_T")
        if tuple(x_T.shape) != tuple(shape):
            raise ValueError(f"x_T has shape {tuple(x_T.shape)} but shape={tuple(shape)} was asked for")
        x_T = x_T.to(device) if device is not None else x_T
    xt = x_T
    for i, t in enumerate(scheduler.timesteps.tolist()[start:]):
        t_batch = torch.full((xt.shape[0],), t, dtype=torch.int64, device=xt.device)  # (B,)
        eps_pred = model(xt, t_batch)  # guidance: a wrapped model, same signature
        out = scheduler.step(eps_pred, t, xt, generator=generator)
        xt = out.prev_sample
        if callback is not None:
            callback(i, t, xt, out.pred_original_sample)  # diffusers' name, so its schedulers fit too
    return xt


@dataclass
class Trajectory:
    """A ``sample`` callback that keeps x_t and pred_x0 (detached, on the CPU) at every ``every``-th step
    and at t = 0, the last step, so the final sample is always kept. ``stacked()`` gives (N, B, ...)."""

    every: int = 1
    steps: list[int] = field(default_factory=list)  # loop index i of each record
    timesteps: list[int] = field(default_factory=list)  # the step t each record came from
    xts: list[torch.Tensor] = field(default_factory=list)  # sample after the step
    pred_x0s: list[torch.Tensor] = field(default_factory=list)  # guess of x_0 made at t

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"every must be a positive int, got {self.every!r}")

    def __call__(self, i: int, t: int, xt: torch.Tensor, pred_x0: torch.Tensor) -> None:
        if i % self.every == 0 or t == 0:
            self.steps.append(i)
            self.timesteps.append(t)
            self.xts.append(xt.detach().to("cpu", copy=True))
            self.pred_x0s.append(pred_x0.detach().to("cpu", copy=True))

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(xts, pred_x0s) stacked into tensors of shape (N, B, ...), N the number of records."""
        if not self.xts:
            raise ValueError("the trajectory is empty: pass it as callback= to sample() first")
        return torch.stack(self.xts), torch.stack(self.pred_x0s)


def record_trajectory(every: int = 1) -> Trajectory:
    """A callback for ``sample`` that records x_t and pred_x0 every ``every`` steps (and the last)."""
    return Trajectory(every=every)
