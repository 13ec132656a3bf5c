"""Every exercise check accepts a right answer and rejects an unfinished stub and typical wrong answers.

Each key of ``exercises.CHECKS`` needs an entry in ``exercise_cases.CASES``: a reference solution written there
(independently of the package's own answer) and at least one wrong answer a learner might write.
A new check without cases fails ``test_every_check_has_cases``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from exercise_cases import CASES
from exercise_cases.foundations import alpha_bars_cumsum, alpha_bars_numpy

from diffusion_lab import exercises
from diffusion_lab.exercises import CHECKS, ExerciseFailed

RIGHT = [pytest.param(k, fn, id=f"{k}-{fn.__name__}") for k, c in CASES.items() for fn in c.right]
WRONG = [pytest.param(k, fn, id=f"{k}-{fn.__name__}") for k, c in CASES.items() for fn in c.wrong]


def test_every_check_has_cases() -> None:
    assert set(CASES) == set(CHECKS), "add a right and a wrong answer to CASES for every new check"
    for key, cases in CASES.items():
        assert cases.right and cases.wrong, f"exercise {key} needs at least one right and one wrong answer"


def test_checks_are_the_public_check_functions() -> None:
    public = {getattr(exercises, n) for n in dir(exercises) if n.startswith("check_")}
    assert set(CHECKS.values()) == public


@pytest.mark.parametrize(("key", "solution"), RIGHT)
def test_right_answer_passes(key: str, solution: Callable[..., Any], capsys: pytest.CaptureFixture[str]) -> None:
    CHECKS[key](solution)
    assert f"Exercise {key} passed" in capsys.readouterr().out


@pytest.mark.parametrize("key", sorted(CHECKS))
def test_stub_is_not_done_yet(key: str) -> None:
    def stub(*args):
        raise NotImplementedError("Your turn: write your answer here, then run the check below.")

    with pytest.raises(ExerciseFailed, match="not done yet") as info:
        CHECKS[key](stub)
    assert info.value.exercise == key
    assert str(info.value).startswith(f"Exercise {key}:")


@pytest.mark.parametrize(("key", "wrong"), WRONG)
def test_wrong_answer_fails(key: str, wrong: Callable[..., Any], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ExerciseFailed, match=rf"^Exercise {re.escape(key)}: ") as info:
        CHECKS[key](wrong)
    assert "not done yet" not in str(info.value)
    assert "passed" not in capsys.readouterr().out


@pytest.mark.parametrize("key", sorted(CHECKS))
def test_not_a_function(key: str) -> None:
    with pytest.raises(ExerciseFailed, match="expected a function, got int"):
        CHECKS[key](42)


def test_exercise_failed_is_an_assertion_error() -> None:
    assert issubclass(ExerciseFailed, AssertionError)  # pytest and nbval report it as a failed check


def test_wrong_answer_message_points_at_the_error() -> None:
    with pytest.raises(ExerciseFailed, match=r"alpha_bars is off: at flat index \d+ you gave .* expected"):
        CHECKS["1.2"](alpha_bars_cumsum)
    with pytest.raises(ExerciseFailed, match=r"should have shape \(5, 1, 4, 4\)"):
        CHECKS["1.3"](lambda x0, a, eps: (x0 + eps)[0])
    with pytest.raises(ExerciseFailed, match="should be a torch.Tensor, got ndarray"):
        CHECKS["1.2"](alpha_bars_numpy)
