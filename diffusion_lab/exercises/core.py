"""What every exercise check shares (all chapters): the failure type, calling the learner's function,
comparing tensors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class ExerciseFailed(AssertionError):
    """Raised by a check when the answer is not right yet; the message says what to look at."""

    def __init__(self, exercise: str, message: str):
        super().__init__(f"Exercise {exercise}: {message}")
        self.exercise = exercise


def _call(exercise: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Call the learner's function, turning 'not written yet' into a friendly failure."""
    if not callable(fn):
        raise ExerciseFailed(exercise, f"expected a function, got {type(fn).__name__}; pass the function itself")
    try:
        return fn(*args)
    except NotImplementedError as err:
        raise ExerciseFailed(exercise, "not done yet: replace the `raise NotImplementedError` with your code") from err


def _compare(exercise: str, got: Any, want: torch.Tensor, what: str, atol: float = 1e-5,
             rtol: float = 1e-4) -> None:
    if not isinstance(got, torch.Tensor):
        raise ExerciseFailed(exercise, f"{what} should be a torch.Tensor, got {type(got).__name__}")
    if got.shape != want.shape:
        raise ExerciseFailed(exercise, f"{what} should have shape {tuple(want.shape)}, got {tuple(got.shape)}")
    if not got.is_floating_point():
        raise ExerciseFailed(exercise, f"{what} should be floating point, got dtype {got.dtype}")
    got64, want64 = got.detach().double().cpu(), want.double().cpu()
    if not torch.allclose(got64, want64, atol=atol, rtol=rtol):
        err = (got64 - want64).abs()
        i = int(err.argmax())
        raise ExerciseFailed(
            exercise,
            f"{what} is off: at flat index {i} you gave {got64.flatten()[i].item():.6g}, "
            f"expected {want64.flatten()[i].item():.6g} (largest error {err.max().item():.3g})",
        )


def _passed(exercise: str, note: str) -> None:
    print(f"✅ Exercise {exercise} passed: {note}")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


