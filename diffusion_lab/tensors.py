"""Small tensor helpers and the package's one set of argument checks (chapter 01).

``append_dims`` is the course's one broadcasting helper: a per-sample coefficient of shape (B,)
becomes (B, 1, 1, 1) for images of shape (B, C, H, W), or (B, 1) for 2-D points of shape (B, 2).

The ``check_*`` functions validate one argument each and raise a short error that names it, says
what it got and how to fix it; configs and models call them in a line each, so the idea stays in view.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch


def append_dims(x: torch.Tensor, target_ndim: int) -> torch.Tensor:
    """Append trailing singleton dimensions to ``x`` until it has ``target_ndim`` dimensions.

    ``append_dims(torch.ones(8), 4).shape == (8, 1, 1, 1)``.
    """
    missing = target_ndim - x.ndim
    if missing < 0:
        raise ValueError(f"cannot append dims: input has {x.ndim} dims, more than the target {target_ndim}")
    return x[(...,) + (None,) * missing]


def check_float_tensor(x: object, name: str) -> torch.Tensor:
    """Return ``x`` if it is a floating-point tensor, else raise a TypeError that says what it got."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}; use torch.as_tensor(...)")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}; use {name}.float()")
    return x


def check_int(value: object, name: str, low: int | None = None) -> int:
    """``value`` if it is an int (not a bool) and at least ``low``; else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
        kind = {None: "an int", 0: "a non-negative int", 1: "a positive int"}.get(low, f"an int >= {low}")
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return value


def check_finite_data(x: torch.Tensor, name: str) -> torch.Tensor:
    """Training data ``x`` (N, ...) if every value is a number; else a ValueError naming the first bad sample.
    NaN or inf in the data makes the loss NaN, which no learning rate can fix: say so before training."""
    finite = torch.isfinite(x).flatten(1).all(1) if x.ndim > 1 else torch.isfinite(x)  # (N,)
    if not bool(finite.all()):
        bad = (~finite).nonzero().flatten()
        raise ValueError(f"{name} contain NaN or inf in {len(bad)} of {len(finite)} samples (the first is sample "
                         f"{int(bad[0])}): fix or drop those samples before training; a lower learning rate will "
                         f"not help")
    return x


def check_number(value: object, name: str, *, positive: bool = False) -> float:
    """``value`` as a float if it is a finite real number, > 0 when ``positive``, else >= 0."""
    ok = (not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
          and (value > 0 if positive else value >= 0))
    if not ok:
        raise ValueError(f"{name} must be a {'positive number' if positive else 'number >= 0'}, got {value!r}")
    return float(value)


def check_fraction(value: object, name: str) -> float:
    """``value`` as a float if it lies in [0, 1) (a probability of dropping, an EMA decay)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


def check_int_tuple(values: object, name: str) -> tuple[int, ...]:
    """``values`` (a list, say from JSON) as a tuple of positive ints."""
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ValueError(f"{name} must be a tuple of positive ints such as (1, 2, 4), got {values!r}")
    values = tuple(values)
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(f"{name} must be a non-empty tuple of positive ints such as (1, 2, 4), got {values}")
    return values


def check_images(images: object, name: str = "images") -> torch.Tensor:
    """A non-empty float tensor (N, C, H, W) scaled to [-1, 1], the range every model here reads."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a (N, C, H, W) tensor, got {got}; for one image use x[None]")
    if not images.is_floating_point():
        raise TypeError(f"{name} must be floating point in [-1, 1], got dtype {images.dtype}; "
                        f"use x.float() / 127.5 - 1 for raw 0..255 pixels")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is empty; give at least one image")
    lo, hi = float(images.min()), float(images.max())
    if lo < -1.01 or hi > 1.01:
        raise ValueError(f"{name} must be scaled to [-1, 1] (the range the models work in), got values in "
                         f"[{lo:.3g}, {hi:.3g}]; use mnist_tensors(), or x / 127.5 - 1 for 0..255 pixels")
    return images


def check_model_input(x: object, t: object, weight: torch.Tensor, shape: tuple[int, ...]) -> None:
    """The checks every network here makes of its input x (B, *shape) and steps t (B,) (None: no t).

    ``weight`` is any parameter of the model: x must match its dtype (unless autocast is on) and device.
    A -1 in ``shape`` accepts any size there.
    """
    want = "(B, " + ", ".join("?" if s == -1 else str(s) for s in shape) + ")"
    if not isinstance(x, torch.Tensor) or x.ndim != len(shape) + 1 or any(
            s not in (-1, got) for s, got in zip(shape, x.shape[1:])):
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"the model expects input shaped {want}, got {got}; for one sample use x[None]")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}; use x.float() "
                        f"(x.float() / 127.5 - 1 for raw 0..255 pixels)")
    if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(f"x has dtype {x.dtype} but the model's parameters are {weight.dtype}; "
                        f"convert one of them, e.g. x.to({weight.dtype}) or model.to({x.dtype})")
    if x.device != weight.device:
        raise ValueError(f"x is on {x.device} but the model is on {weight.device}; use x.to(device)")
    if t is None:
        return
    B = x.shape[0]
    if not isinstance(t, torch.Tensor) or t.shape != (B,):
        got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"t must be a tensor of shape (B,) = ({B},), one step per sample, got {got}; "
                         "for one step for all, use torch.full((B,), t)")
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"t must hold integer (or real) timesteps, got dtype {t.dtype}")


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Run ``model`` in eval mode inside the block and restore its train/eval mode afterwards.

    Every helper that scores with a model (a judge, a guiding classifier) uses this, so none of them
    leaves a learner's model in a mode it did not ask for.
    """
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def check_levels(image_size: int, levels: int, channels: tuple[int, ...], num_groups: int) -> None:
    """A U-shaped network's levels: ``image_size`` halves ``levels - 1`` times, and GroupNorm splits every
    level's channels into ``num_groups`` groups."""
    factor = 2 ** (levels - 1)
    if image_size % factor != 0:
        raise ValueError(f"image_size {image_size} must be divisible by 2**(levels - 1) = {factor}: {levels} levels "
                         f"halve it {levels - 1} times")
    for c in channels:
        if c % num_groups != 0:
            raise ValueError(f"every level's channels {channels} must be divisible by num_groups={num_groups} "
                             f"(GroupNorm); {c} is not")
