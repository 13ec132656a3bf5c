"""GaussianMixture (chapter 09): the exact score is the gradient of the exact log-density, samples have
the mixture's moments, and noising gives the mixture of the noised points."""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_lab.data import GaussianMixture


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def three_d() -> GaussianMixture:
    """Unequal weights and stds, in 3-D, so no symmetry hides a mistake."""
    return GaussianMixture(torch.tensor([[0.0, 1.0, -1.0], [2.0, -1.0, 0.5], [-1.5, 0.0, 2.0]]),
                           torch.tensor([0.5, 1.0, 0.3]), torch.tensor([2.0, 1.0, 1.0]))


@pytest.mark.parametrize("mixture", [GaussianMixture.equal(), GaussianMixture.unequal(), three_d()], ids=repr)
def test_score_is_the_gradient_of_log_prob(mixture: GaussianMixture) -> None:
    x = (2 * torch.randn(64, mixture.dim, generator=gen(0), dtype=torch.float64)).requires_grad_(True)
    (grad,) = torch.autograd.grad(mixture.log_prob(x).sum(), x)
    torch.testing.assert_close(mixture.score(x.detach()), grad, atol=1e-10, rtol=1e-8)


def test_log_prob_of_one_component_is_the_gaussian_density() -> None:
    g = GaussianMixture(torch.tensor([[1.0, -2.0]]), torch.tensor([0.5]), torch.tensor([3.0]))
    x = torch.tensor([[1.0, -2.0], [2.0, 0.0]], dtype=torch.float64)
    sq = (x - torch.tensor([1.0, -2.0], dtype=torch.float64)).pow(2).sum(1)
    want = -sq / (2 * 0.25) - 2 * math.log(0.5) - math.log(2 * math.pi)
    torch.testing.assert_close(g.log_prob(x), want)
    torch.testing.assert_close(g.score(x), -(x - torch.tensor([1.0, -2.0], dtype=torch.float64)) / 0.25)


def test_log_prob_integrates_to_one_on_a_grid() -> None:
    grid = torch.linspace(-5, 5, 401, dtype=torch.float64)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    points = torch.stack([xx.flatten(), yy.flatten()], 1)
    for mixture in (GaussianMixture.equal(), GaussianMixture.unequal()):
        mass = mixture.log_prob(points).exp().sum() * (grid[1] - grid[0]) ** 2
        assert float(mass) == pytest.approx(1.0, abs=1e-3)


def test_far_from_every_mode_the_score_stays_finite() -> None:
    """Responsibilities come from a softmax of log-densities: no 0 / 0 far from the modes."""
    x = torch.tensor([[300.0, -200.0], [0.0, 1e3]])
    s = GaussianMixture.unequal().score(x)
    assert torch.isfinite(s).all() and s.dtype == torch.float32


def test_sample_moments_and_mode_weights() -> None:
    mixture = three_d()
    x = mixture.sample(200_000, gen(1)).double()
    w, mu, s = mixture.weights, mixture.means, mixture.stds
    mean = (w[:, None] * mu).sum(0)
    # Var of each coordinate: sum_k w_k (s_k^2 + mu_k^2) - mean^2
    var = (w[:, None] * (s[:, None] ** 2 + mu**2)).sum(0) - mean**2
    torch.testing.assert_close(x.mean(0), mean, atol=0.02, rtol=0)
    torch.testing.assert_close(x.var(0), var, atol=0, rtol=0.02)
    share = GaussianMixture.unequal().sample(50_000, gen(2))[:, 0].lt(0).double().mean()
    assert float(share) == pytest.approx(0.8, abs=0.01)


def test_sample_is_repeatable_and_float32() -> None:
    a, b = GaussianMixture.equal().sample(10, gen(3)), GaussianMixture.equal().sample(10, gen(3))
    assert torch.equal(a, b) and a.shape == (10, 2) and a.dtype == torch.float32


def test_noised_at_alpha_one_sigma_zero_is_the_mixture_itself() -> None:
    mixture = three_d()
    same = mixture.noised(1.0, 0.0)
    for name in ("means", "stds", "weights"):
        torch.testing.assert_close(getattr(same, name), getattr(mixture, name), atol=0, rtol=0)


def test_noised_mixture_describes_the_noised_samples() -> None:
    mixture, alpha, sigma = GaussianMixture.unequal(), 0.6, 0.8
    x0 = mixture.sample(200_000, gen(4)).double()
    xt = alpha * x0 + sigma * torch.randn(x0.shape, generator=gen(5), dtype=torch.float64)
    noised = mixture.noised(alpha, sigma)
    torch.testing.assert_close(noised.stds, (alpha**2 * 0.25 + sigma**2) ** 0.5 * torch.ones(2, dtype=torch.float64))
    # the mean log-density of the noised points under the noised mixture beats it under the clean one
    assert noised.log_prob(xt).mean() > mixture.log_prob(xt).mean() + 0.1
    # and matches the moments
    torch.testing.assert_close(xt.var(0), noised.sample(200_000, gen(6)).double().var(0), atol=0, rtol=0.02)
    # a 0-d tensor works too (alpha_bar from a schedule)
    torch.testing.assert_close(mixture.noised(torch.tensor(alpha), torch.tensor(sigma)).stds, noised.stds)


@pytest.mark.parametrize(("args", "match"), [
    ((torch.zeros(2), torch.ones(2), torch.ones(2)), r"means must be \(K, d\)"),
    ((torch.zeros(2, 2), torch.ones(3), torch.ones(2)), r"stds must have one value per component"),
    ((torch.zeros(2, 2), torch.tensor([1.0, 0.0]), torch.ones(2)), "stds must be positive"),
    ((torch.zeros(2, 2), torch.ones(2), torch.tensor([1.0, -1.0])), "weights must be positive"),
])
def test_bad_mixtures_are_refused(args, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GaussianMixture(*args)


def test_bad_points_and_levels_are_refused() -> None:
    mixture = GaussianMixture.equal()
    with pytest.raises(ValueError, match=r"points shaped \(N, 2\)"):
        mixture.score(torch.zeros(3, 3))
    with pytest.raises(TypeError, match="floating-point"):
        mixture.log_prob(torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="both be 0"):
        mixture.noised(0.0, 0.0)
    with pytest.raises(ValueError, match="sigma must be a number"):
        mixture.noised(1.0, -0.1)


def test_the_noise_predictor_is_minus_sigma_times_the_exact_score() -> None:
    """eps(x_t, t) = -sigma_t grad log p_t(x_t) at whole and fractional steps, one t or several per batch."""
    from diffusion_lab.notation import alpha_sigma
    from diffusion_lab.schedules import NoiseSchedule

    mixture, schedule = GaussianMixture.unequal(), NoiseSchedule.from_name("cosine", 1000)
    model = mixture.noise_predictor(schedule)
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([10.0, 10.0, 312.5, 312.5, 999.0, 999.0])
    eps = model(x, t)
    for i in range(6):
        alpha, sigma = (float(c) for c in alpha_sigma(schedule, float(t[i])))
        want = -sigma * mixture.noised(alpha, sigma).score(x[i:i + 1])
        torch.testing.assert_close(eps[i:i + 1], want)
    assert eps.shape == x.shape and eps.dtype == x.dtype
