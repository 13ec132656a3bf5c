"""Checks for chapter 04: the noise-prediction loss, one optimisation step, the EMA update."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from diffusion_lab.exercises.core import ExerciseFailed, _call, _compare, _gen, _passed
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.training import diffusion_loss


class _ToyDenoiser(nn.Module):
    """A small model with a real dependence on both x_t and t, so that mixing them up changes the loss."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([[0.5, -0.2, 0.1], [0.3, 0.8, -0.4], [-0.6, 0.1, 0.9]]))
            self.lin.bias.copy_(torch.tensor([0.1, -0.1, 0.05]))
        self.t_scale = nn.Parameter(torch.tensor(0.002))

    def forward(self, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.lin(xt) + self.t_scale * t.float()[:, None]


def _loss_inputs(seed: int) -> tuple[NoiseSchedule, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = _gen(seed)
    schedule = NoiseSchedule.from_name("cosine", T=100)
    x0 = torch.randn(6, 3, generator=gen)
    t = torch.tensor([0, 3, 17, 50, 88, 99])
    eps = torch.randn(6, 3, generator=gen)
    return schedule, x0, t, eps


def check_diffusion_loss(fn: Callable[..., torch.Tensor]) -> None:
    """4.1: loss(model, x0, t, eps, alpha_bars) = mean of (eps - model(x_t, t))^2, x_t from the closed form."""
    model = _ToyDenoiser()
    schedule, x0, t, eps = _loss_inputs(0)
    got = _call("4.1", fn, model, x0, t, eps, schedule.alpha_bars.clone())
    if isinstance(got, torch.Tensor) and got.ndim != 0:
        raise ExerciseFailed("4.1", f"the loss should be one number (a 0-d tensor), got shape {tuple(got.shape)}; "
                                    f"take the mean over the whole batch")
    want = diffusion_loss(model, schedule, x0, t, eps).mean()
    _compare("4.1", got, want, "the loss", atol=1e-6)
    if isinstance(got, torch.Tensor) and not got.requires_grad:
        raise ExerciseFailed("4.1", "the loss has no gradient: keep it a torch computation through the model "
                                    "(no .item(), .detach() or torch.no_grad())")
    _passed("4.1", "that is DDPM's simplified loss, the quantity every model in this course is trained on.")


def check_train_step(fn: Callable[..., Any]) -> None:
    """4.2: train_step(model, optimizer, x0, t, eps, alpha_bars) makes one optimiser step, returns the loss (float)."""
    model = _ToyDenoiser()
    reference = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    schedule = NoiseSchedule.from_name("cosine", T=100)
    for seed in (1, 2):  # two steps: left-over gradients from the first step would spoil the second
        _, x0, t, eps = _loss_inputs(seed)
        got = _call("4.2", fn, model, opt, x0, t, eps, schedule.alpha_bars.clone())
        ref_opt.zero_grad()
        loss = diffusion_loss(reference, schedule, x0, t, eps).mean()
        loss.backward()
        ref_opt.step()
        if isinstance(got, torch.Tensor):
            raise ExerciseFailed("4.2", "return the loss as a Python float (loss.item()), so that a long run does "
                                        "not keep every step's computation graph alive")
        if not isinstance(got, float):
            raise ExerciseFailed("4.2", f"return the loss as a Python float, got {type(got).__name__}")
        if abs(got - loss.item()) > 1e-5:
            raise ExerciseFailed("4.2", f"step {seed}: you returned loss {got:.6f}, expected {loss.item():.6f} "
                                        f"(the loss before the update)")
        hint = ("did you call optimizer.step()?" if seed == 1 else
                "gradients add up across steps unless you call optimizer.zero_grad() before backward()")
        for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
            try:
                _compare("4.2", p.detach(), q.detach(), f"after step {seed}, the parameter {name!r}", atol=1e-6)
            except ExerciseFailed as err:
                raise ExerciseFailed("4.2", f"{str(err).split(': ', 1)[1]}. {hint}") from None
    _passed("4.2", "zero the gradients, compute the loss, backward, step: the whole of training, repeated.")


def check_ema_update(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> None:
    """4.3: ema_update(ema, weights, decay) = decay * ema + (1 - decay) * weights."""
    gen = _gen(3)
    ema = torch.randn(4, 5, generator=gen)
    weights = torch.randn(4, 5, generator=gen)
    for decay in (0.9, 0.999, 0.0):
        got = _call("4.3", fn, ema.clone(), weights.clone(), decay)
        _compare("4.3", got, decay * ema + (1 - decay) * weights, f"the average with decay {decay}", atol=1e-6)
    _passed("4.3", "with decay 0.999 the average remembers about the last 1000 steps.")


CHECKS: dict[str, Callable[[Callable[..., Any]], None]] = {
    "4.1": check_diffusion_loss,
    "4.2": check_train_step,
    "4.3": check_ema_update,
}
