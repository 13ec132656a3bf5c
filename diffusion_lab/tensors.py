"""Small tensor helpers shared by every module that mixes per-sample scalars with images (chapter 01).

``append_dims`` is the course's one broadcasting helper: a per-sample coefficient of shape (B,)
becomes (B, 1, 1, 1) for images of shape (B, C, H, W), or (B, 1) for 2-D points of shape (B, 2).
"""

from __future__ import annotations

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
