"""What every exercise check shares (all chapters; chapter 00 explains the checks): the failure type,
calling the learner's function, comparing tensors and naming the likely mistake.

A failed check shows only its diagnosis. In Jupyter an exception normally comes with a traceback of
the check's own frames, and for many exercises the check's source *is* the answer; ``ExerciseFailed``
therefore renders itself (IPython's ``_render_traceback_`` hook) as the message alone.
"""

from __future__ import annotations

import inspect
import linecache
import sysconfig
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

_PACKAGE = str(Path(__file__).resolve().parents[1])  # diffusion_lab/: frames here are the course's, not yours
_LIBRARIES = tuple({str(Path(torch.__file__).resolve().parents[1])}
                   | {str(Path(sysconfig.get_paths()[k]).resolve()) for k in ("stdlib", "purelib", "platlib")})

# Errors that many exercises meet; an exercise's own hint (``_call(..., hint=...)``) is tried first.
_COMMON_HINTS = (
    ("only one element tensors can be converted", "math.sqrt and float() take one number: use torch.sqrt "
                                                  "or .sqrt() on a tensor"),
    ("must be real number, not Tensor", "math functions take one number: use the torch version on a tensor"),
    ("must match the size of tensor", "two tensors whose shapes do not broadcast were combined: print their "
                                      ".shape; one value per sample (B,) needs append_dims(c, x.ndim) first"),
)


class ExerciseFailed(AssertionError):
    """Raised by a check when the answer is not right yet; the message says what to look at."""

    def __init__(self, exercise: str, message: str):
        super().__init__(f"Exercise {exercise}: {message}")
        self.exercise = exercise
        self.message = message

    def _render_traceback_(self) -> list[str]:
        """What IPython and Jupyter show instead of a traceback: the diagnosis, never the check's source."""
        return [f"\x1b[0;31mExerciseFailed\x1b[0m: {self}",
                "Change your function, run its cell again, then run this check again."]


def _learner_line(err: BaseException) -> str | None:
    """The last line of the learner's own code in ``err``'s traceback (not the course's, not torch's)."""
    found, name = None, ""
    tb = err.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if not code.co_filename.startswith("<frozen") and not str(Path(code.co_filename).resolve()).startswith(
                (_PACKAGE, *_LIBRARIES)):
            found = (code.co_filename, tb.tb_lineno)
            name = name if code.co_name.startswith("<") else code.co_name  # <listcomp> and such: keep the def's
        tb = tb.tb_next
    if found is None:
        return None
    line = linecache.getline(*found).strip()
    return f"in {name or 'your code'}" + (f": `{line}`" if line else "")


def _call(exercise: str, fn: Callable[..., Any], *args: Any,
          hint: Callable[[Exception], str | None] | None = None) -> Any:
    """Call the learner's function; 'not written yet' and any error it raises become a short failure.

    ``hint(err)`` may return advice for an error this exercise's learners often meet.
    """
    if not callable(fn):
        raise ExerciseFailed(exercise, f"expected a function, got {type(fn).__name__}; pass the function itself")
    _check_signature(exercise, fn, args)
    try:
        return fn(*args)
    except NotImplementedError:
        raise ExerciseFailed(exercise, "not done yet: replace the `raise NotImplementedError` with your code") from None
    except ExerciseFailed:
        raise
    except KeyboardInterrupt:  # stopped by hand or by a time limit (nbgrader's): its traceback would show the check
        raise ExerciseFailed(exercise, "your function was stopped before it returned: if it never finishes, look "
                                       "for a loop whose condition never changes") from None
    except Exception as err:  # an error in the learner's own code: say so, in one line, with a hint
        text = (str(err).strip().splitlines() or [""])[0]
        text = text if len(text) <= 200 else text[:197] + "..."
        where = _learner_line(err)
        message = f"your function raised {type(err).__name__}: {text}" + (f" ({where})" if where else "")
        advice = hint(err) if hint else None
        advice = advice or next((h for pattern, h in _COMMON_HINTS if pattern in str(err)), None)
        raise ExerciseFailed(exercise, message + (f". Hint: {advice}" if advice else "")) from None


def _raises(exercise: str, fn: Callable[..., Any], error: type[Exception], *args: Any) -> tuple[bool, Any]:
    """Call the learner's function where it should raise ``error``: (True, None) if it did, else (False, result)."""
    def probe(*probe_args: Any) -> tuple[bool, Any]:
        try:
            return False, fn(*probe_args)
        except error:
            return True, None

    if not callable(fn):
        return _call(exercise, fn)
    _check_signature(exercise, fn, args)
    return _call(exercise, probe, *args)


def _check_signature(exercise: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """Fail, naming both sides, when ``fn`` cannot take the arguments the check passes (not a raw TypeError)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin that has no signature to read: the call itself will tell
        return
    try:
        signature.bind(*args)
    except TypeError:
        params = ", ".join(str(p.replace(annotation=p.empty, default=p.empty)) for p in signature.parameters.values())
        given = ", ".join(f"a tensor {tuple(a.shape)}" if isinstance(a, torch.Tensor)
                          else repr(a) if isinstance(a, int | float) else f"a {type(a).__name__}" for a in args)
        raise ExerciseFailed(exercise, f"your function takes ({params}) but the check calls it with {len(args)} "
                                       f"argument(s): {given}; give it the parameters the exercise asks for") from None


def _close(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, atol=atol, rtol=rtol)


def _diagnose(got: torch.Tensor, want: torch.Tensor, atol: float, rtol: float, per_sample: bool) -> str:
    """Say how ``got`` differs from ``want`` (same shape, float64): a sign, a factor, some samples, or where."""
    err = (got - want).abs()
    if want.abs().max() > atol and _close(got, -want, atol, rtol):
        return "has the wrong sign everywhere"
    norm = float((want * want).sum())
    if norm > 0:
        factor = float((got * want).sum()) / norm
        if abs(factor - 1) > 1e-3 and _close(got, factor * want, atol, rtol):
            return f"is {factor:.4g} times the expected value everywhere: a constant factor is wrong"
    if per_sample and want.ndim >= 2 and want.shape[0] > 1:
        bad = [i for i in range(want.shape[0]) if not torch.allclose(got[i], want[i], atol=atol, rtol=rtol)]
        if len(bad) < want.shape[0]:
            good = [i for i in range(want.shape[0]) if i not in bad]
            return (f"is right for sample(s) {good} of the batch but not for {bad}: whatever is one value per "
                    f"sample (shape (B,)) is not reaching each sample")
    i = int(err.argmax())
    parts = ["is off:"]
    if want.ndim == 1:
        first = int(torch.nonzero(err > atol + rtol * want.abs())[0])
        parts.append(f"the first {first} values are right, then they drift;" if first else "")
    if want.ndim:
        parts.append(f"at index {tuple(int(j) for j in torch.unravel_index(torch.tensor(i), want.shape))}")
    parts.append(f"you gave {got.flatten()[i].item():.6g}, expected {want.flatten()[i].item():.6g} "
                 f"(largest error {err.max().item():.3g})")
    return " ".join(p for p in parts if p)


def _compare(exercise: str, got: Any, want: torch.Tensor, what: str, atol: float = 1e-5, rtol: float = 1e-4,
             mistakes: Mapping[str, torch.Tensor] | None = None, shape_hint: str = "", per_sample: bool = False) -> None:
    """Fail unless ``got`` equals ``want``; name the mistake when ``got`` equals one of ``mistakes``
    (message -> what that mistake gives), else describe the difference (``per_sample``: say which samples of
    a batch are wrong, for answers that take one value per sample)."""
    if not isinstance(got, torch.Tensor):
        raise ExerciseFailed(exercise, f"{what} should be a torch.Tensor, got {type(got).__name__}")
    if got.shape != want.shape:
        raise ExerciseFailed(exercise, f"{what} should have shape {tuple(want.shape)}, got {tuple(got.shape)}"
                                       + (f"; {shape_hint}" if shape_hint else ""))
    if not got.is_floating_point():
        raise ExerciseFailed(exercise, f"{what} should be floating point, got dtype {got.dtype}")
    got64, want64 = got.detach().double().cpu(), want.detach().double().cpu()
    if torch.allclose(got64, want64, atol=atol, rtol=rtol):
        return
    for message, other in (mistakes or {}).items():
        if _close(got64, other.detach().double().cpu(), atol, rtol):
            raise ExerciseFailed(exercise, f"{what} is not right: {message}")
    raise ExerciseFailed(exercise, f"{what} {_diagnose(got64, want64, atol, rtol, per_sample)}")


def _passed(exercise: str, note: str) -> None:
    print(f"✅ Exercise {exercise} passed: {note}")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
