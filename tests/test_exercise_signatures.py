"""An exercise check given a function with the wrong parameters says so in one line (issue 21): what the
learner's function takes and what the check calls it with, not Python's raw TypeError."""

from __future__ import annotations

import pytest

from diffusion_lab.exercises import CHECKS, ExerciseFailed


def takes_nothing():
    return None


def takes_too_many(a, b, c, d, e, f, g, h):
    return None


@pytest.mark.parametrize("key", sorted(CHECKS))
def test_wrong_signature_is_named(key: str) -> None:
    for fn, takes in ((takes_nothing, "()"), (takes_too_many, "(a, b, c, d, e, f, g, h)")):
        with pytest.raises(ExerciseFailed) as info:
            CHECKS[key](fn)
        message = str(info.value)
        assert "\n" not in message
        assert message.startswith(f"Exercise {key}: your function takes {takes} but the check calls it with ")
        assert message.endswith("give it the parameters the exercise asks for")


def test_defaults_and_varargs_still_bind() -> None:
    def flexible(*args, scale=1.0):
        raise NotImplementedError

    with pytest.raises(ExerciseFailed, match="not done yet"):
        CHECKS["0.1"](flexible)
