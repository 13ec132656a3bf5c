"""FlowMatchingObjective with ``fit`` (chapter 09): a small MLP learns a 2-D mixture, minibatch OT pairs
data with nearer noise, and reflow on a trained flow's own pairs straightens its paths.

One thread, a few hundred steps of a small MLP: each test takes a few seconds on a CPU.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from diffusion_lab.data import GaussianMixture
from diffusion_lab.flows import flow_euler, reflow_pairs, straightness
from diffusion_lab.judges.metrics import sliced_wasserstein
from diffusion_lab.models import MLPConfig, MLPDenoiser
from diffusion_lab.training import FlowMatchingObjective, TrainConfig, fit

MIXTURE = GaussianMixture.unequal()  # far from the noise, so an untrained flow scores badly
CONFIG = TrainConfig(steps=400, batch_size=256, lr=3e-3, warmup_steps=20, ema_decay=0.0, grad_clip=None,
                     log_every=100, checkpoint_every=10_000)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def small_mlp(seed: int = 0) -> MLPDenoiser:
    torch.manual_seed(seed)
    return MLPDenoiser(MLPConfig(hidden_dim=64, num_layers=3, sinusoidal_dim=16))


@pytest.fixture(scope="module")
def data() -> torch.Tensor:
    return MIXTURE.sample(4000, gen(0))


@pytest.fixture(scope="module")
def noise() -> torch.Tensor:
    return torch.randn(1000, 2, generator=gen(1))


@pytest.fixture(scope="module")
def flow(data) -> MLPDenoiser:
    """A flow trained on the mixture with independent pairs, shared by the tests below."""
    model = small_mlp()
    fit(model, FlowMatchingObjective(data), CONFIG, progress=False)
    return model


def test_fit_learns_the_mixture(flow, noise) -> None:
    exact = MIXTURE.sample(1000, gen(2))
    floor = sliced_wasserstein(MIXTURE.sample(1000, gen(3)), exact)  # two exact samples differ this much
    untrained = sliced_wasserstein(flow_euler(small_mlp(), noise, 32), exact)
    trained = sliced_wasserstein(flow_euler(flow, noise, 32), exact)
    assert trained < 0.3 * untrained and trained < 2 * floor, (floor, untrained, trained)


def test_ot_pairing_shortens_the_pairs_and_keeps_the_draw_order(data) -> None:
    config = TrainConfig(batch_size=256)
    plain = FlowMatchingObjective(data).draw(gen(4), config)
    paired = FlowMatchingObjective(data, ot=True).draw(gen(4), config)
    assert torch.equal(plain["x1"], paired["x1"]) and torch.equal(plain["tau"], paired["tau"])
    assert torch.equal(plain["eps"].sort(0).values, paired["eps"].sort(0).values)  # the same noise, reordered
    distance = {name: (b["x1"] - b["eps"]).pow(2).sum(1).mean() for name, b in (("plain", plain), ("ot", paired))}
    assert distance["ot"] < 0.6 * distance["plain"], distance


def test_training_on_ot_pairs_straightens_the_paths(flow, noise) -> None:
    """Minibatch OT (small batches keep the assignment cheap here) already makes the paths far straighter."""
    model = small_mlp()
    fit(model, FlowMatchingObjective(MIXTURE.sample(4000, gen(7)), ot=True),
        dataclasses.replace(CONFIG, steps=200, batch_size=32), progress=False)
    assert straightness(model, noise, 16) < 0.2 * straightness(flow, noise, 16)


def test_reflow_straightens_the_paths(flow, noise) -> None:
    before = straightness(flow, noise, 16)
    pairs = reflow_pairs(flow, (4000, 2), num_steps=16, generator=gen(5))
    reflowed = copy.deepcopy(flow)
    fit(reflowed, FlowMatchingObjective(pairs=pairs), CONFIG, progress=False)
    after = straightness(reflowed, noise, 16)
    assert after < 0.5 * before, (before, after)
    # straighter paths: one Euler step lands nearer the samples than the first flow's one step does
    target = MIXTURE.sample(1000, gen(6))
    assert (sliced_wasserstein(flow_euler(reflowed, noise, 1), target)
            < sliced_wasserstein(flow_euler(flow, noise, 1), target))


def test_draw_is_repeatable_and_groups_are_tenths_of_t(data) -> None:
    objective = FlowMatchingObjective(data)
    a, b = objective.draw(gen(7), TrainConfig(batch_size=64)), objective.draw(gen(7), TrainConfig(batch_size=64))
    assert all(torch.equal(a[k], b[k]) for k in a)
    batch = {"tau": torch.tensor([0.0, 0.05, 0.15, 0.55, 0.95, 1.0])}  # tenths of t = 999 (1 - tau): 0 is data
    assert objective.groups(batch).tolist() == [9, 9, 8, 4, 0, 0]
    assert objective.describe() == {"data_shape": [4000, 2], "objective": "flow_matching"}
    assert FlowMatchingObjective(data, ot=True).describe()["objective"] == "flow_matching_ot"


def test_reflow_draws_each_data_point_with_its_own_noise() -> None:
    noise, x1 = torch.randn(50, 2, generator=gen(8)), torch.randn(50, 2, generator=gen(9))
    objective = FlowMatchingObjective(pairs=(noise, x1))
    batch = objective.draw(gen(10), TrainConfig(batch_size=32))
    idx = torch.randint(50, (32,), generator=gen(10))
    assert torch.equal(batch["x1"], x1[idx]) and torch.equal(batch["eps"], noise[idx])
    assert objective.describe() == {"data_shape": [50, 2], "objective": "reflow"}


@pytest.mark.parametrize(("kwargs", "match"), [
    ({}, "give either x1"),
    ({"x1": torch.zeros(4, 2), "pairs": (torch.zeros(4, 2), torch.zeros(4, 2))}, "not both"),
    ({"pairs": (torch.zeros(4, 2), torch.zeros(4, 2)), "ot": True}, "use one or the other"),
    ({"pairs": (torch.zeros(4, 2), torch.zeros(5, 2))}, "same shape"),
    ({"pairs": torch.zeros(4, 2)}, r"pairs must be \(noise, x1\)"),
    ({"x1": torch.tensor([[0.0, float("nan")]])}, "NaN"),
    ({"x1": torch.zeros(4, 2), "ot": 1}, "ot must be True or False"),
])
def test_bad_objectives_are_refused(kwargs, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FlowMatchingObjective(**kwargs)
