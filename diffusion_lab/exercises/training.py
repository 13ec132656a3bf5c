"""Checks for chapter 04: the noise-prediction loss, one optimisation step, the EMA update."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from diffusion_lab.exercises.core import ExerciseFailed, _call, _compare, _gen, _passed
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.tensors import append_dims
from diffusion_lab.training import diffusion_loss


class _ToyDenoiser(nn.Module):
    """A small model with a real dependence on both x_t and t, so that mixing them up changes the loss.

    It mixes the 3 channels of points (B, 3) or images (B, 3, H, W) alike, so a check can use both.
    """

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([[0.5, -0.2, 0.1], [0.3, 0.8, -0.4], [-0.6, 0.1, 0.9]]))
            self.lin.bias.copy_(torch.tensor([0.1, -0.1, 0.05]))
        self.t_scale = nn.Parameter(torch.tensor(0.2))

    def forward(self, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.lin(xt.movedim(1, -1)).movedim(-1, 1) + self.t_scale * append_dims(t.float() / 100, xt.ndim)


# Points (B, 3) and images (B, 3, 4, 4), B chosen so that a hard-coded broadcast fails on one of them.
_BATCHES = {"points": ((6, 3), [0, 3, 17, 50, 88, 99]), "images": ((5, 3, 4, 4), [1, 20, 45, 70, 99])}


def _loss_inputs(seed: int, data: str = "points") -> tuple[NoiseSchedule, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = _gen(seed)
    schedule = NoiseSchedule.from_name("cosine", T=100)
    shape, steps = _BATCHES[data]
    x0 = torch.randn(shape, generator=gen)
    t = torch.tensor(steps)
    eps = torch.randn(shape, generator=gen)
    return schedule, x0, t, eps


def _broadcast_hint(err: Exception) -> str | None:
    if isinstance(err, RuntimeError) and ("size of tensor" in str(err) or "shape" in str(err)):
        return ("alpha_bars[t] has shape (B,): broadcast it with append_dims(alpha_bars[t], x0.ndim), which fits "
                "points (B, D) and images (B, C, H, W) alike")
    return None


def _loss_mistakes(model: nn.Module, schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor,
                   eps: torch.Tensor) -> dict[str, torch.Tensor]:
    a = append_dims(schedule.alpha_bars[t], x0.ndim)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
    with torch.no_grad():
        return {
            "the model predicts the noise: compare model(x_t, t) with eps, not with x0": ((x0 - model(xt, t)) ** 2).mean(),
            "x_t takes the square roots, sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps":
                ((eps - model(a * x0 + (1 - a) * eps, t)) ** 2).mean(),
            "the model must see the noisy x_t, not the clean x0": ((eps - model(x0, t)) ** 2).mean(),
            "that is the sum of the squared errors; take the mean": ((eps - model(xt, t)) ** 2).sum(),
        }


def check_diffusion_loss(fn: Callable[..., torch.Tensor]) -> None:
    """4.1: loss(model, x0, t, eps, alpha_bars) = mean of (eps - model(x_t, t))^2, x_t from the closed form."""
    model = _ToyDenoiser()
    for data in ("points", "images"):
        schedule, x0, t, eps = _loss_inputs(0, data)
        got = _call("4.1", fn, model, x0, t, eps, schedule.alpha_bars.clone(), hint=_broadcast_hint)
        if isinstance(got, torch.Tensor) and got.ndim != 0:
            raise ExerciseFailed("4.1", f"the loss should be one number (a 0-d tensor), got shape {tuple(got.shape)}; "
                                        f"take the mean over the whole batch")
        want = diffusion_loss(model, schedule, x0, t, eps).mean()
        _compare("4.1", got, want, f"the loss on {data} {tuple(x0.shape)}", atol=1e-6,
                 mistakes=_loss_mistakes(model, schedule, x0, t, eps))
        if isinstance(got, torch.Tensor) and not got.requires_grad:
            raise ExerciseFailed("4.1", "the loss has no gradient: keep it a torch computation through the model "
                                        "(no .item(), .detach() or torch.no_grad())")
    _passed("4.1", "that is DDPM's simplified loss, the quantity every model in this course is trained on.")


def _count_calls(optimizer: torch.optim.Optimizer, calls: dict[str, int]) -> None:
    """Count the learner's optimizer.step() and optimizer.zero_grad() calls (instance attributes win)."""
    for name in ("step", "zero_grad"):
        original = getattr(optimizer, name)

        def counted(*args: Any, _original: Callable[..., Any] = original, _name: str = name, **kwargs: Any) -> Any:
            calls[_name] += 1
            return _original(*args, **kwargs)

        setattr(optimizer, name, counted)


def _step_hint(step: int, calls: dict[str, int], moved: bool) -> str:
    """Why the parameters are wrong after a training step, from what the learner's step called."""
    if calls["step"] == 0:
        return "optimizer.step() was never called, so the parameters did not move: call it after backward()"
    if calls["step"] > 1:
        return f"optimizer.step() was called {calls['step']} times in one training step; call it once"
    if not moved:
        return ("optimizer.step() was called but found no gradients: call loss.backward() before it, and "
                "optimizer.zero_grad() before backward(), not between backward() and step()")
    if step > 1 and calls["zero_grad"] == 0:
        return ("the first step was right, the second is not: backward() adds to the gradients left from the "
                "step before unless you call optimizer.zero_grad() before it")
    return "the update does not follow this batch's gradient: backward() once on your loss, then optimizer.step()"


def check_train_step(fn: Callable[..., Any]) -> None:
    """4.2: train_step(model, optimizer, x0, t, eps, alpha_bars) makes one optimiser step, returns the loss (float)."""
    model = _ToyDenoiser()
    reference = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    calls = {"step": 0, "zero_grad": 0}
    _count_calls(opt, calls)
    # two steps: left-over gradients from the first would spoil the second; the second on images
    for step, (seed, data) in enumerate(((1, "points"), (2, "images")), start=1):
        schedule, x0, t, eps = _loss_inputs(seed, data)
        before = [p.detach().clone() for p in model.parameters()]
        calls.update(step=0, zero_grad=0)
        got = _call("4.2", fn, model, opt, x0, t, eps, schedule.alpha_bars.clone(), hint=_broadcast_hint)
        ref_opt.zero_grad()
        loss = diffusion_loss(reference, schedule, x0, t, eps).mean()
        loss.backward()
        ref_opt.step()
        if isinstance(got, torch.Tensor):
            raise ExerciseFailed("4.2", "return the loss as a Python float (loss.item()), so that a long run does "
                                        "not keep every step's computation graph alive")
        if not isinstance(got, float):
            raise ExerciseFailed("4.2", f"return the loss as a Python float, got {type(got).__name__}")
        if abs(got - loss.item()) > 1e-5 * max(1.0, abs(loss.item())):
            with torch.no_grad():
                after = diffusion_loss(reference, schedule, x0, t, eps).mean().item()
            why = ("that is the loss after the update; return the one you computed before optimizer.step()"
                   if abs(got - after) <= 1e-5 * max(1.0, abs(after)) else "the loss before the update, as your loss from exercise 4.1 gives it")
            raise ExerciseFailed("4.2", f"step {step} ({data}): you returned loss {got:.6f}, expected "
                                        f"{loss.item():.6f}: {why}")
        moved = any(not torch.equal(p.detach(), b) for p, b in zip(model.parameters(), before, strict=True))
        for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
            if not torch.allclose(p.detach(), q.detach(), atol=1e-6, rtol=1e-4):
                raise ExerciseFailed("4.2", f"after step {step} ({data}), the parameter {name!r} is not what one "
                                            f"optimiser step gives: {_step_hint(step, calls, moved)}")
    _passed("4.2", "zero the gradients, compute the loss, backward, step: the whole of training, repeated.")


def check_ema_update(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> None:
    """4.3: ema_update(ema, weights, decay) = decay * ema + (1 - decay) * weights."""
    gen = _gen(3)
    for shape in ((4, 5), (7,)):
        ema = torch.randn(shape, generator=gen)
        weights = torch.randn(shape, generator=gen)
        for decay in (0.9, 0.999, 0.0):
            got = _call("4.3", fn, ema.clone(), weights.clone(), decay)
            _compare("4.3", got, decay * ema + (1 - decay) * weights, f"the average with decay {decay}", atol=1e-6,
                     mistakes={"decay weighs the old average (it changes slowly): decay * ema + (1 - decay) * weights":
                               (1 - decay) * ema + decay * weights,
                               "a plain mean ignores decay": (ema + weights) / 2})
    _passed("4.3", "with decay 0.999 the average remembers about the last 1000 steps.")


CHECKS: dict[str, Callable[[Callable[..., Any]], None]] = {
    "4.1": check_diffusion_loss,
    "4.2": check_train_step,
    "4.3": check_ema_update,
}
