"""sliced_wasserstein (chapter 09): exact answers for identical, shifted and scaled sets, symmetry, and
unequal set sizes through quantiles, for W_2 and W_1; W_1's sampling noise on the unequal mixture falls as
n^(-1/2), W_2's more slowly (the share of points in the small mode dominates it)."""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_lab.data import GaussianMixture
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
    (torch.zeros(5, 2), torch.zeros(5, 2), {"p": 0.5}, r"p must be a number >= 1 \(1: W_1, 2: W_2\), got 0.5"),
    (torch.zeros(5, 2), torch.zeros(5, 2), {"p": True}, "p must be a number >= 1"),
    (torch.zeros(5, 2), torch.zeros(5, 2), {"p": math.inf}, "p must be a number >= 1"),
])
def test_bad_arguments_are_refused(a, b, kwargs, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sliced_wasserstein(a, b, **kwargs)


# ----- W_1 (p = 1) ---------------------------------------------------------------------------------------------


def test_w1_is_zero_for_the_same_set_and_symmetric() -> None:
    x, y = torch.randn(500, 2, generator=gen(8)), torch.randn(400, 2, generator=gen(9))
    assert sliced_wasserstein(x, x, p=1) == 0.0
    assert sliced_wasserstein(x, x[torch.randperm(500, generator=gen(1))], p=1) == pytest.approx(0.0, abs=1e-12)
    assert sliced_wasserstein(x, y, p=1) == pytest.approx(sliced_wasserstein(y, x, p=1), rel=1e-12)


def test_w1_of_a_shift_is_the_mean_projected_length() -> None:
    """In 1-D a shift by s is W_1 = |s| exactly; in 2-D the mean of |theta . s| over unit directions is 2|s|/pi."""
    x = torch.randn(300, 1, generator=gen(10))
    assert sliced_wasserstein(x, x + 1.5, p=1) == pytest.approx(1.5, rel=1e-6)  # x + 1.5 rounded in float32
    x = torch.randn(300, 2, generator=gen(11))
    got = sliced_wasserstein(x, x + torch.tensor([3.0, 0.0]), num_projections=4000, p=1)
    assert got == pytest.approx(2 * 3.0 / math.pi, rel=0.03)
    values = [sliced_wasserstein(x, x + torch.tensor([s, 0.0]), p=1) for s in (0.0, 0.5, 1.0, 2.0)]
    assert values == sorted(values) and values[0] == 0.0


def test_w1_unequal_sizes_use_the_quantiles_exactly() -> None:
    # {0, 1} against {0, 0, 0, 1}: a quarter of the mass moves by 1, so W_1 = 1/4 (W_2 = 1/2)
    a = torch.tensor([[0.0], [1.0]])
    assert sliced_wasserstein(a, torch.tensor([[0.0], [0.0], [1.0], [1.0]]), p=1) == pytest.approx(0.0, abs=1e-12)
    assert sliced_wasserstein(a, torch.tensor([[0.0], [0.0], [0.0], [1.0]]), p=1) == pytest.approx(0.25, rel=1e-12)


def test_w1_sees_the_mode_weights_linearly() -> None:
    """Moving a share delta of the points from the left mode to the right one, 4 away, costs about 4 delta times
    the mean |cos| of the directions, 2 / pi, in W_1: ten times the share, ten times the distance."""
    x = GaussianMixture.unequal().sample(4000, gen(12))
    left = torch.nonzero(x[:, 0] < 0).flatten()

    def moved(delta: float) -> torch.Tensor:
        y = x.clone()
        y[left[: round(delta * len(x))], 0] += 4.0
        return y

    small, large = (sliced_wasserstein(x, moved(d), num_projections=1000, p=1) for d in (0.01, 0.1))
    assert small == pytest.approx(0.01 * 4 * 2 / math.pi, rel=0.1) and large / small == pytest.approx(10, rel=0.1)


def test_the_noise_floor_of_w1_falls_as_one_over_sqrt_n() -> None:
    """Two sets of n exact samples of the unequal mixture: W_1 between them falls about 4 times from n = 500 to
    8,000 (n^(-1/2)); W_2 falls less (about n^(-1/4) to n^(-3/8) here). Means over 12 seeds; checked loosely."""
    mixture = GaussianMixture.unequal()

    def floor(n: int, p: int) -> float:
        return sum(sliced_wasserstein(mixture.sample(n, gen(100 + s)), mixture.sample(n, gen(200 + s)), p=p)
                   for s in range(12)) / 12

    w1 = floor(500, 1) / floor(8000, 1)
    w2 = floor(500, 2) / floor(8000, 2)
    assert 3.0 < w1 < 5.5, w1
    assert w2 < w1, (w1, w2)
