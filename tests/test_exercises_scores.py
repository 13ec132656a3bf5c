"""Chapter 09's score and Heun-step checks name each typical mistake, and a failure shows only its diagnosis.

(Every check is also run through tests/test_exercises.py with the answers in exercise_cases/scores.py.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from exercise_cases import scores

from diffusion_lab.exercises import CHECKS, ExerciseFailed, check_heun_step, check_score_from_eps
from diffusion_lab.exercises.scores import HEUN, SCORE

MISTAKES = [
    (SCORE, scores.returns_none, r"should be a torch\.Tensor, got NoneType"),
    (SCORE, scores.score_plus_sign, r"points against the noise.*with a minus sign"),
    (SCORE, scores.score_times_sigma, r"divide the noise by sigma, do not multiply"),
    (SCORE, scores.score_over_variance, r"divides by sigma\^2, the noise's variance"),
    (SCORE, scores.score_over_alpha, r"divides by alpha = sqrt\(1 - sigma\^2\)"),
    (SCORE, scores.score_no_scale, r"scale the noise by 1 / sigma"),
    (SCORE, scores.score_image_view, r"should have shape \(5, 2\), got .*append_dims\(sigma, eps\.ndim\)"),
    (SCORE, scores.score_first_sigma, r"right for sample\(s\) \[0\].*not reaching each sample"),
    (HEUN, scores.returns_none, r"should be a torch\.Tensor, got NoneType"),
    (HEUN, scores.heun_euler_only, r"that is Euler's step: Heun takes the slope again at its end"),
    (HEUN, scores.heun_wrong_direction, r"this step goes the wrong way"),
    (HEUN, scores.heun_no_half, r"without the 1/2 the step is twice as long"),
    (HEUN, scores.heun_second_slope_only, r"not the second one alone"),
    (HEUN, scores.heun_slope_at_old_sigma, r"at noise level sigma_next \(not sigma\)"),
    (HEUN, scores.heun_from_euler_end, r"starts again from x, not from the end of Euler's step"),
    (HEUN, scores.heun_no_last_step_guard, r"sigma_next=0\.0.*holds NaN or inf: at sigma_next = 0 \(the last step\)"),
    (HEUN, scores.heun_last_step_stands_still, r"the last step still moves: Euler's step lands on D"),
    (HEUN, scores.heun_over_variance, r"divide by sigma, not sigma\^2"),
]


def test_the_checks_are_registered() -> None:
    assert CHECKS[SCORE] is check_score_from_eps and CHECKS[HEUN] is check_heun_step


@pytest.mark.parametrize(("key", "wrong", "message"), MISTAKES, ids=[f"{k}-{fn.__name__}" for k, fn, _ in MISTAKES])
def test_mistake_is_named(key: str, wrong: Callable[..., Any], message: str) -> None:
    with pytest.raises(ExerciseFailed, match=message) as info:
        CHECKS[key](wrong)
    assert "at index" not in str(info.value) and "\n" not in str(info.value)


def test_the_score_check_tries_images_and_points() -> None:
    """sigma.view(-1, 1, 1, 1) suits images only: the check's second case, 2-D points, catches it."""
    shapes = []

    def spy(eps, sigma):
        shapes.append(tuple(eps.shape))
        return scores.score_from_eps(eps, sigma)

    check_score_from_eps(spy)
    assert len(shapes) == 2 and len(shapes[0]) == 4 and len(shapes[1]) == 2


def test_the_heun_check_includes_the_last_step() -> None:
    seen = []

    def spy(denoise, x, sigma, sigma_next):
        seen.append((sigma, sigma_next))
        return scores.heun_step(denoise, x, sigma, sigma_next)

    check_heun_step(spy)
    assert len(seen) >= 3 and any(s_next == 0 for _, s_next in seen) and any(s_next > 0 for _, s_next in seen)
