"""Chapter 09's flow-matching checks name each typical mistake, and a failure shows only its diagnosis.

(Every check is also run through tests/test_exercises.py with the answers in exercise_cases/flows.py.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from exercise_cases import flows

from diffusion_lab.exercises import CHECKS, ExerciseFailed, check_flow_interpolate, check_flow_target
from diffusion_lab.exercises.flows import INTERPOLATE, TARGET

FLOW_MISTAKES = [
    (INTERPOLATE, flows.interpolate_swapped, r"the roles are swapped: tau = 0 is the noise"),
    (INTERPOLATE, flows.interpolate_sqrt, r"DDPM's variance-preserving mix"),
    (INTERPOLATE, flows.interpolate_noise_unscaled, r"the noise is scaled by 1 - tau"),
    (INTERPOLATE, flows.interpolate_points_broadcast, r"images \(B, C, H, W\)|RuntimeError.*Hint: tau has shape "
                                                      r"\(B,\): broadcast it with append_dims"),
    (INTERPOLATE, flows.interpolate_image_view, r"points \(B, 2\).*append_dims"),
    (INTERPOLATE, flows.interpolate_first_tau, r"right for sample\(s\) \[0\].*not reaching each sample"),
    (INTERPOLATE, flows.returns_none, r"should be a torch\.Tensor, got NoneType"),
    (TARGET, flows.target_velocity_reversed, r"time runs from the noise \(tau = 0\) to the data"),
    (TARGET, flows.target_velocity_data, r"that is the data alone"),
    (TARGET, flows.target_velocity_noise, r"what a DDPM network predicts"),
    (TARGET, flows.target_velocity_sum, r"subtract the noise"),
    (TARGET, flows.target_velocity_mean, r"should have shape \(4, 3, 5, 5\), got \(\)"),
    (TARGET, flows.returns_none, r"should be a torch\.Tensor, got NoneType"),
]


def test_the_checks_are_registered() -> None:
    assert CHECKS[INTERPOLATE] is check_flow_interpolate and CHECKS[TARGET] is check_flow_target


@pytest.mark.parametrize(("key", "wrong", "message"), FLOW_MISTAKES,
                         ids=[f"{k}-{fn.__name__}" for k, fn, _ in FLOW_MISTAKES])
def test_flow_mistake_is_named(key: str, wrong: Callable[..., Any], message: str) -> None:
    with pytest.raises(ExerciseFailed, match=message) as info:
        CHECKS[key](wrong)
    assert "at index" not in str(info.value) and "\n" not in str(info.value)


def test_the_hard_coded_broadcasts_fail_on_the_other_shape() -> None:
    """tau[:, None] suits points only, tau.view(-1, 1, 1, 1) images only: the check tries both."""
    with pytest.raises(ExerciseFailed, match=r"RuntimeError.*append_dims\(tau, x1\.ndim\)"):
        check_flow_interpolate(flows.interpolate_points_broadcast)
    with pytest.raises(ExerciseFailed, match=r"x_tau for points \(B, 2\) \(6, 2\) should have shape \(6, 2\), "
                                             r"got \(6, 1, 6, 2\); one value per sample"):
        check_flow_interpolate(flows.interpolate_image_view)
