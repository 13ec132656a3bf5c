"""Checks for chapter 09's flow matching: the linear path x_tau and its velocity u.

Time as in the chapter (MIT 6.S184): tau = 0 is the noise eps, tau = 1 the data x1, the reverse of DDPM's t.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from diffusion_lab.exercises.core import ExerciseFailed, _call, _close, _compare, _gen, _passed
from diffusion_lab.exercises.foundations import _PER_SAMPLE
from diffusion_lab.flows import interpolate, target_velocity

INTERPOLATE, TARGET = "9.3", "9.4"  # the exercises' numbers in chapter 09

# images first, then points: a fixed broadcast such as tau[:, None] or tau.view(-1, 1, 1, 1) fits only one
_SHAPES = (((4, 3, 5, 5), "images (B, C, H, W)"), ((6, 2), "points (B, 2)"))


def _pair(seed: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Data x1 (off-centre, not unit-scaled, so that x1 and eps cannot be mistaken) and noise eps."""
    return 2 * torch.randn(shape, generator=_gen(seed)) + 0.5, torch.randn(shape, generator=_gen(seed + 1))


def _tau_hint(err: Exception) -> str | None:
    if isinstance(err, RuntimeError) and ("size of tensor" in str(err) or "shape" in str(err)):
        return "tau has shape (B,): broadcast it with append_dims(tau, x1.ndim), which fits images and points alike"
    return None


def check_flow_interpolate(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """9.3: x_tau = tau x1 + (1 - tau) eps, one tau per sample (B,), for images and for points."""
    for seed, (shape, what) in zip((90, 92), _SHAPES):
        x1, eps = _pair(seed, shape)
        tau = torch.rand(shape[0], generator=_gen(seed + 10))
        tau[:2] = torch.tensor([0.0, 1.0])  # the two ends: pure noise and pure data
        got = _call(INTERPOLATE, fn, x1.clone(), eps.clone(), tau.clone(), hint=_tau_hint)
        a = tau.view(-1, *[1] * (len(shape) - 1))  # (B, 1, ...)
        want = interpolate(x1, eps, tau)
        mistakes = {
                     "the roles are swapped: tau = 0 is the noise and tau = 1 the data (the reverse of DDPM's t), "
                     "so the data gets tau and the noise 1 - tau": a * eps + (1 - a) * x1,
                     "that is DDPM's variance-preserving mix: the linear path's coefficients are tau and 1 - tau, "
                     "no square roots": a.sqrt() * x1 + (1 - a).sqrt() * eps,
                     "the noise is scaled by 1 - tau, so that at tau = 1 only the data is left": a * x1 + eps,
                     "the data is scaled by tau, so that at tau = 0 only the noise is left": x1 + (1 - a) * eps}
        if _right_at_the_ends_only(got, want) and not any(_close(got.double(), m.double(), 1e-5, 1e-4)
                                                          for m in mistakes.values()):
            raise ExerciseFailed(INTERPOLATE, f"x_tau for {what} {shape} is right at tau = 0 and tau = 1 but not in "
                                              f"between: on the straight path the coefficients are exactly tau and "
                                              f"1 - tau, no square roots or other curves")
        _compare(INTERPOLATE, got, want, f"x_tau for {what} {shape}", shape_hint=_PER_SAMPLE, per_sample=True,
                 mistakes=mistakes)
    _passed(INTERPOLATE, "a straight line from the noise (tau = 0) to the data (tau = 1), one tau per sample.")


def _right_at_the_ends_only(got: object, want: torch.Tensor) -> bool:
    """Whether an answer is right for the first two samples (tau = 0 and 1) and wrong for every other one: a
    wrong path between the right ends, which is not the broadcasting slip that some-samples-wrong usually is."""
    if not isinstance(got, torch.Tensor) or got.shape != want.shape or not got.is_floating_point():
        return False
    right = [torch.allclose(g.double(), w.double(), atol=1e-5, rtol=1e-4) for g, w in zip(got, want)]
    return right[0] and right[1] and not any(right[2:])


def check_flow_target(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """9.4: the velocity u = x1 - eps of the linear path from the noise eps to the data x1, any shape."""
    for seed, (shape, what) in zip((94, 96), _SHAPES):
        x1, eps = _pair(seed, shape)
        got = _call(TARGET, fn, x1.clone(), eps.clone())
        _compare(TARGET, got, target_velocity(x1, eps), f"the velocity for {what} {shape}", mistakes={
            "time runs from the noise (tau = 0) to the data (tau = 1): the velocity is x1 - eps, not eps - x1":
                eps - x1,
            "that is the data alone; the velocity is the difference data minus noise, d x_tau / d tau": x1,
            "that is the noise, what a DDPM network predicts; a flow predicts the velocity x1 - eps": eps,
            "that is minus the noise; the velocity also has the data in it: x1 - eps": -eps,
            "subtract the noise: the path goes from eps to x1, so its velocity is x1 - eps": x1 + eps})
    _passed(TARGET, "the same velocity all along each straight line; the network learns its average over all lines "
                    "through a point.")


CHECKS: dict[str, Callable[[Callable[..., torch.Tensor]], None]] = {
    INTERPOLATE: check_flow_interpolate,
    TARGET: check_flow_target,
}
