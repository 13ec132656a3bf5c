"""flows.py (chapter 09): the linear path and its loss, the Euler and Heun samplers against exact ODE
solutions, the exact assignment against brute force, OT pairing, straightness and reflow pairs."""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest
import torch

from diffusion_lab.data import GaussianMixture
from diffusion_lab.flows import (
    T_MAX,
    flow_euler,
    flow_heun,
    flow_matching_loss,
    interpolate,
    linear_assignment,
    network_t,
    ot_pairing,
    reflow_pairs,
    straightness,
    target_velocity,
)
from diffusion_lab.judges.metrics import sliced_wasserstein
from diffusion_lab.sampling import record_trajectory


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Counted:
    """A velocity model v(x, tau) given as a function of x and tau (not t), counting its calls."""

    def __init__(self, velocity):
        self.velocity, self.calls, self.taus = velocity, 0, []

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert t.shape == (x.shape[0],) and t.is_floating_point()
        self.calls += 1
        tau = 1 - t / T_MAX
        self.taus.append(float(tau[0]))
        return self.velocity(x, tau[(...,) + (None,) * (x.ndim - 1)])


# ----- the path and the loss ------------------------------------------------------------------------

def test_interpolate_goes_from_noise_at_zero_to_data_at_one() -> None:
    x1, eps = torch.randn(3, 1, 4, 4, generator=gen(0)), torch.randn(3, 1, 4, 4, generator=gen(1))
    out = interpolate(x1, eps, torch.tensor([0.0, 1.0, 0.25]))
    assert torch.equal(out[0], eps[0]) and torch.equal(out[1], x1[1])
    torch.testing.assert_close(out[2], 0.25 * x1[2] + 0.75 * eps[2])
    # the velocity is the derivative of the path in tau
    tau, d = torch.full((3,), 0.4), 1e-3
    slope = (interpolate(x1, eps, tau + d) - interpolate(x1, eps, tau - d)) / (2 * d)
    torch.testing.assert_close(slope, target_velocity(x1, eps), atol=1e-3, rtol=0)


def test_network_t_counts_like_ddpm_steps() -> None:
    """t = 999 (1 - tau): the noise (tau = 0) is t = 999 and the data (tau = 1) t = 0, as for the DDPM models."""
    assert torch.equal(network_t(torch.tensor([0.0, 0.5, 1.0])), torch.tensor([999.0, 499.5, 0.0]))
    assert network_t(torch.zeros(1, dtype=torch.float64)).dtype == torch.float64


def test_loss_is_zero_for_the_true_velocity_of_a_single_point() -> None:
    """Data = one point mu: the exact velocity field is (mu - x) / (1 - tau), and the loss is 0 there."""
    mu = torch.tensor([1.5, -0.5])
    model = Counted(lambda x, tau: (mu - x) / (1 - tau))
    x1, eps = mu.expand(8, 2), torch.randn(8, 2, generator=gen(2))
    tau = torch.rand(8, generator=gen(3)) * 0.99
    loss = flow_matching_loss(model, x1, eps, tau)
    assert loss.shape == (8,) and float(loss.max()) < 1e-10
    zero_model = Counted(lambda x, tau: torch.zeros_like(x))
    torch.testing.assert_close(flow_matching_loss(zero_model, x1, eps, tau), (x1 - eps).pow(2).mean(1))


def test_loss_refuses_a_wrong_output_shape() -> None:
    with pytest.raises(ValueError, match=r"returned shape \(4,\), expected \(4, 2\)"):
        flow_matching_loss(lambda x, t: x[:, 0], torch.zeros(4, 2), torch.zeros(4, 2), torch.zeros(4))


# ----- the samplers -----------------------------------------------------------------------------------

def test_one_euler_step_follows_a_straight_field_exactly() -> None:
    mu = torch.tensor([2.0, 1.0])
    x0 = torch.randn(5, 2, generator=gen(4))
    out = flow_euler(Counted(lambda x, tau: (mu - x) / (1 - tau)), x0, 1)
    torch.testing.assert_close(out, mu.expand(5, 2))


@pytest.mark.parametrize(("sampler", "order"), [(flow_euler, 1), (flow_heun, 2)])
def test_samplers_converge_at_their_order(sampler, order: int) -> None:
    """dx / dtau = tau x has x(1) = exp(1/2) x(0): halving the step cuts the error by 2^order."""
    x0 = torch.randn(4, 3, dtype=torch.float64, generator=gen(5))
    exact = math.exp(0.5) * x0
    errors = [float((sampler(Counted(lambda x, tau: tau * x), x0, n) - exact).abs().max()) for n in (16, 32, 64)]
    for coarse, fine in itertools.pairwise(errors):
        assert coarse / fine == pytest.approx(2**order, rel=0.15)


def test_the_exact_velocity_of_a_mixture_carries_noise_to_the_mixture() -> None:
    """With p_tau = mixture.noised(tau, 1 - tau), Tweedie gives E[x_1 - eps | x_tau] = (x + (1 - tau) score) / tau:
    integrating it (Heun, 16 steps) turns noise into samples as close to the mixture as exact samples are."""
    mixture = GaussianMixture.unequal()

    def exact(x, tau):
        tau = float(tau[0].clamp(min=1e-6))  # every sample of a sampler's batch shares tau
        return (x + (1 - tau) * mixture.noised(tau, 1 - tau).score(x)) / tau

    noise = torch.randn(2000, 2, generator=gen(20), dtype=torch.float64)
    samples = flow_heun(Counted(exact), noise, 16)
    reference = mixture.sample(2000, gen(21))
    floor = sliced_wasserstein(mixture.sample(2000, gen(22)), reference)
    assert sliced_wasserstein(samples, reference) < 1.5 * floor
    assert float((samples[:, 0] < 0).double().mean()) == pytest.approx(0.8, abs=0.03)  # the right mode weights


def test_number_of_evaluations_and_times() -> None:
    x0 = torch.randn(2, 2, generator=gen(6))
    euler, heun = Counted(lambda x, tau: -x), Counted(lambda x, tau: -x)
    flow_euler(euler, x0, 4)
    flow_heun(heun, x0, 4)
    assert euler.calls == 4 and euler.taus == [0.0, 0.25, 0.5, 0.75]
    assert heun.calls == 2 * 4 - 1  # EDM's Heun: the last step is Euler
    assert heun.taus == [0.0, 0.25, 0.25, 0.5, 0.5, 0.75, 0.75]


@pytest.mark.parametrize("sampler", [flow_euler, flow_heun])
def test_callback_sees_t_the_new_sample_and_the_guess_of_the_data(sampler) -> None:
    mu = torch.tensor([1.0, -1.0])
    x0 = torch.randn(3, 2, generator=gen(7))
    trajectory = record_trajectory()
    out = sampler(Counted(lambda x, tau: (mu - x) / (1 - tau)), x0, 4, callback=trajectory)
    assert trajectory.steps == [0, 1, 2, 3]
    assert trajectory.timesteps == [999.0, 749.25, 499.5, 249.75]  # the network's t at tau = 0, 1/4, 1/2, 3/4
    xts, pred_x1s = trajectory.stacked()
    assert torch.equal(xts[-1], out)
    torch.testing.assert_close(pred_x1s, mu.expand(4, 3, 2))  # a straight field points at its end from anywhere


def test_samplers_refuse_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_steps must be a positive int"):
        flow_euler(lambda x, t: x, torch.zeros(2, 2), 0)
    with pytest.raises(TypeError, match="x_noise must be a floating-point tensor"):
        flow_heun(lambda x, t: x, torch.zeros(2, 2, dtype=torch.long), 2)


# ----- exact assignment and OT pairing ------------------------------------------------------------------

def brute_force(cost: np.ndarray) -> float:
    n = len(cost)
    return min(cost[np.arange(n), list(p)].sum() for p in itertools.permutations(range(n)))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
def test_assignment_is_optimal_against_brute_force(n: int) -> None:
    rng = np.random.default_rng(n)
    for trial in range(20):
        cost = rng.random((n, n)) if trial % 2 else rng.integers(0, 4, (n, n)).astype(float)  # ties, too
        if trial % 5 == 4:
            cost = -cost * 100  # negative costs
        col = linear_assignment(cost)
        assert sorted(col.tolist()) == list(range(n)), "not a permutation"
        assert cost[np.arange(n), col].sum() == pytest.approx(brute_force(cost), abs=1e-9)


def test_assignment_beats_every_swap_on_larger_matrices() -> None:
    """n = 60: no exchange of two rows' columns lowers the total (a necessary condition), it is no worse
    than the identity, and it finds a planted zero-cost permutation."""
    rng = np.random.default_rng(0)
    cost = rng.random((60, 60))
    col = linear_assignment(cost)
    total = cost[np.arange(60), col].sum()
    swap_gain = cost[np.arange(60), col][:, None] + cost[np.arange(60), col][None, :] - cost[:, col] - cost[:, col].T
    assert swap_gain.max() <= 1e-12
    assert total <= np.trace(cost)
    planted = 1 + rng.random((60, 60))  # a permutation of cost 0 hidden among costs in [1, 2]
    perm = rng.permutation(60)
    planted[np.arange(60), perm] = 0.0
    assert np.array_equal(linear_assignment(planted), perm)


def test_assignment_of_a_batch_of_256_is_fast() -> None:
    x, y = torch.randn(256, 2, generator=gen(8)), torch.randn(256, 2, generator=gen(9))
    cost = torch.cdist(x.double(), y.double()).pow(2).numpy()
    start = time.perf_counter()
    linear_assignment(cost)
    assert time.perf_counter() - start < 2.0  # about 0.1 s alone; generous for a busy machine


def test_assignment_refuses_a_bad_cost() -> None:
    with pytest.raises(ValueError, match="square"):
        linear_assignment(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="finite"):
        linear_assignment(np.array([[0.0, np.inf], [1.0, 0.0]]))


def test_ot_pairing_reorders_the_noise_to_the_cheapest_pairing() -> None:
    x1 = torch.randn(64, 1, 3, 3, generator=gen(10)) + 2
    eps = torch.randn(64, 1, 3, 3, generator=gen(11))
    paired = ot_pairing(x1, eps)
    # the same noise, reordered
    assert torch.equal(paired.flatten(1).sort(0).values, eps.flatten(1).sort(0).values)
    before, after = (x1 - eps).pow(2).sum(), (x1 - paired).pow(2).sum()
    assert after < 0.9 * before
    # small batch: exactly the brute-force optimum
    a, b = x1[:6].flatten(1).double(), eps[:6].flatten(1).double()
    best = brute_force(torch.cdist(a, b).pow(2).numpy())
    assert float((x1[:6].double() - ot_pairing(x1[:6], eps[:6]).double()).pow(2).sum()) == pytest.approx(best, rel=1e-9)
    with pytest.raises(ValueError, match="same shape"):
        ot_pairing(x1, eps[:3])


# ----- straightness and reflow pairs --------------------------------------------------------------------

def test_straightness_is_zero_for_straight_paths_and_positive_for_curved_ones() -> None:
    x0 = torch.randn(16, 2, generator=gen(12), dtype=torch.float64)
    mu = torch.tensor([1.0, 2.0], dtype=torch.float64)
    assert straightness(Counted(lambda x, tau: (mu - x) / (1 - tau)), x0, 8) == pytest.approx(0.0, abs=1e-9)
    assert straightness(Counted(lambda x, tau: torch.ones_like(x)), x0, 8) == pytest.approx(0.0, abs=1e-9)
    # rotation by a quarter turn over tau in [0, 1]: the paths are arcs
    rotate = Counted(lambda x, tau: math.pi / 2 * torch.stack([-x[:, 1], x[:, 0]], 1))
    assert straightness(rotate, x0, 64) > 0.1


def test_reflow_pairs_are_noise_and_the_flows_samples() -> None:
    mu = torch.tensor([3.0, -1.0])
    model = Counted(lambda x, tau: (mu - x) / (1 - tau))
    noise, samples = reflow_pairs(model, (10, 2), num_steps=4, generator=gen(13), batch_size=4)
    assert torch.equal(noise, torch.randn(10, 2, generator=gen(13)))
    torch.testing.assert_close(samples, mu.expand(10, 2))
    assert model.calls == 3 * (2 * 4 - 1)  # three batches of Heun with 4 steps
