"""sliced_wasserstein (chapter 09): exact answers for identical, shifted and scaled sets, symmetry, and
unequal set sizes through quantiles."""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_lab.judges.metrics import sliced_wasserstein


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_zero_for_the_same_set_in_any_order() -> None:
    x = torch.randn(500, 2, generator=gen(0))
    assert sliced_wasserstein(x, x) == 0.0
    assert sliced_wasserstein(x, x[torch.randperm(500, generator=gen(1))]) == pytest.approx(0.0, abs=1e-12)


def test_a_shift_by_s_measures_about_s_over_sqrt_d() -> None:
    """Along a unit direction theta the shift moves every point by theta . s; the mean of (theta . s)^2 over
    directions is |s|^2 / d."""
    for d in (2, 5):
        x = torch.randn(300, d, generator=gen(d))
        shift = torch.zeros(d)
        shift[0] = 3.0
        got = sliced_wasserstein(x, x + shift, num_projections=4000)
        assert got == pytest.approx(3.0 / math.sqrt(d), rel=0.05)


def test_grows_with_the_shift_and_is_symmetric() -> None:
    x, y = torch.randn(400, 2, generator=gen(2)), torch.randn(400, 2, generator=gen(3))
    values = [sliced_wasserstein(x, y + torch.tensor([s, 0.0])) for s in (0.0, 0.5, 1.0, 2.0)]
    assert values == sorted(values) and values[0] < 0.2
    assert sliced_wasserstein(x, y + 1) == pytest.approx(sliced_wasserstein(y + 1, x), rel=1e-12)


def test_unequal_sizes_use_the_quantiles_exactly() -> None:
    # 1-D: {0, 1} against {0, 0, 1, 1} is the same distribution; against {0, 0, 0, 1}, a quarter of the mass
    # moves by 1, so W_2^2 = 1/4 (and in 1-D every direction is +-1).
    a = torch.tensor([[0.0], [1.0]])
    assert sliced_wasserstein(a, torch.tensor([[0.0], [0.0], [1.0], [1.0]])) == pytest.approx(0.0, abs=1e-12)
    assert sliced_wasserstein(a, torch.tensor([[0.0], [0.0], [0.0], [1.0]])) == pytest.approx(0.5, rel=1e-12)
    # a set against itself repeated three times: still 0; against a 2x bigger sample of the same law: small
    x = torch.randn(200, 2, generator=gen(4))
    assert sliced_wasserstein(x, x.repeat(3, 1)) == pytest.approx(0.0, abs=1e-9)
    y = torch.randn(333, 2, generator=gen(5))
    assert sliced_wasserstein(x, y) < 0.2 < sliced_wasserstein(x, 2 * y)


def test_the_same_directions_every_call_unless_a_generator_is_given() -> None:
    x, y = torch.randn(100, 3, generator=gen(6)), torch.randn(100, 3, generator=gen(7))
    assert sliced_wasserstein(x, y) == sliced_wasserstein(x, y)
    assert sliced_wasserstein(x, y, generator=gen(1)) != sliced_wasserstein(x, y, generator=gen(2))


@pytest.mark.parametrize(("a", "b", "kwargs", "match"), [
    (torch.zeros(5), torch.zeros(5, 2), {}, r"a must be a non-empty tensor of points shaped \(N, d\)"),
    (torch.zeros(5, 2), torch.zeros(0, 2), {}, "b must be a non-empty"),
    (torch.zeros(5, 2), torch.zeros(5, 3), {}, "same number of values per point"),
    (torch.zeros(5, 2), torch.zeros(5, 2), {"num_projections": 0}, "num_projections must be a positive int"),
])
def test_bad_arguments_are_refused(a, b, kwargs, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sliced_wasserstein(a, b, **kwargs)
