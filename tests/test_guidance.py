"""Tests for classifier-free and classifier guidance (diffusion_lab.guidance, chapter 07)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from diffusion_lab.guidance import (
    cfg_combine,
    check_scale,
    classifier_free_guidance,
    classifier_guidance,
    classifier_log_prob_grad,
)
from diffusion_lab.sampling import DDIMScheduler, DDPMScheduler, sample
from diffusion_lab.schedules import NoiseSchedule


class CountingModel(nn.Module):
    """eps = x * (1 + cond-dependent factor) + t / 1000; counts its calls and batch sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.shape[0])
        factor = cond.float().reshape(len(cond), -1).sum(1)  # (B,)
        return x * (1 + 0.1 * factor)[:, None, None, None] + t[:, None, None, None] / 1000


def test_cfg_combine_is_the_formula():
    e0, e1 = torch.randn(4, 3), torch.randn(4, 3)
    torch.testing.assert_close(cfg_combine(e0, e1, 0.0), e0)
    torch.testing.assert_close(cfg_combine(e0, e1, 1.0), e1)
    torch.testing.assert_close(cfg_combine(e0, e1, 3.0), e0 + 3 * (e1 - e0))
    with pytest.raises(ValueError, match="same shape"):
        cfg_combine(e0, e1[:2], 2.0)


@pytest.mark.parametrize("w", [0.0, 1.0, 2.5, 7.5])
def test_cfg_matches_two_separate_predictions_in_one_pass(w):
    model = CountingModel()
    x, t = torch.randn(3, 1, 2, 2), torch.tensor([10, 20, 30])
    cond, null = torch.tensor([1, 2, 3]), torch.tensor([10])
    guided = classifier_free_guidance(model, cond, null, w)(x, t)
    expected = cfg_combine(model(x, t, null.expand(3)), model(x, t, cond), w)
    torch.testing.assert_close(guided, expected)
    assert model.calls[0] == (3 if w in (0.0, 1.0) else 6)  # one forward pass, doubled batch when needed


def test_cfg_with_token_ids_and_a_negative_prompt():
    model = CountingModel()
    x, t = torch.randn(2, 1, 2, 2), torch.tensor([5, 5])
    cond = torch.tensor([[1, 4, 5, 0], [1, 6, 7, 0]])
    negative = torch.tensor([[1, 9, 0, 0]])  # one negative prompt for both samples
    out = classifier_free_guidance(model, cond, negative, 4.0)(x, t)
    torch.testing.assert_close(out, cfg_combine(model(x, t, negative.expand(2, 4)), model(x, t, cond), 4.0))


@pytest.mark.parametrize("w, error, message", [
    (-1.0, ValueError, "must be >= 0 .*give it as a negative prompt instead"),
    (math.nan, TypeError, "finite number"),
    (math.inf, TypeError, "finite number"),
    ("3", TypeError, "finite number"),
    (True, TypeError, "finite number"),
])
def test_bad_guidance_scale(w, error, message):
    with pytest.raises(error, match=message):
        classifier_free_guidance(CountingModel(), torch.tensor([1]), torch.tensor([0]), w)
    assert check_scale(2) == 2.0


def test_cfg_mismatched_conditions_are_clear_errors():
    model = CountingModel()
    x, t = torch.randn(3, 1, 2, 2), torch.tensor([1, 2, 3])
    with pytest.raises(ValueError, match="cond holds 2 conditions but the batch has 3 samples"):
        classifier_free_guidance(model, torch.tensor([1, 2]), torch.tensor([0]), 2.0)(x, t)
    with pytest.raises(ValueError, match="conditions of the same kind"):
        classifier_free_guidance(model, torch.tensor([1, 2, 3]), torch.zeros(1, 12, dtype=torch.long), 2.0)
    with pytest.raises(ValueError, match="null_cond must be a tensor"):
        classifier_free_guidance(model, torch.tensor([1, 2, 3]), 10, 2.0)


class LinearClassifier(nn.Module):
    """logits = [mean(x), -mean(x)]: class 0 likes bright images, class 1 dark ones; ignores t."""

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        m = x.flatten(1).mean(1)
        return torch.stack([m, -m], dim=1)


def test_classifier_gradient_matches_the_closed_form():
    x, t = torch.randn(2, 1, 3, 3), torch.tensor([0, 0])
    grad = classifier_log_prob_grad(LinearClassifier(), x, t, torch.tensor([0, 1]))
    # log p(0 | x) = m - logsumexp(m, -m); d/dm = 1 - tanh(m); dm/dx = 1/9
    m = x.flatten(1).mean(1)
    expected0 = ((1 - torch.tanh(m[0])) / 9).expand(1, 3, 3)
    torch.testing.assert_close(grad[0], expected0)
    torch.testing.assert_close(grad[1], -((1 + torch.tanh(m[1])) / 9).expand(1, 3, 3))


def test_classifier_guidance_shifts_eps_by_sigma_times_gradient():
    schedule = NoiseSchedule.from_name("cosine", 1000)
    base = lambda x, t: torch.zeros_like(x)  # noqa: E731
    x, t = torch.randn(2, 1, 3, 3), torch.tensor([100, 900])
    labels = torch.tensor([0])
    guided = classifier_guidance(base, labels, LinearClassifier(), schedule, 5.0)(x, t)
    grad = classifier_log_prob_grad(LinearClassifier(), x, t, labels.expand(2))
    sigma = (1 - schedule.alpha_bars[t]).sqrt().float()[:, None, None, None]
    torch.testing.assert_close(guided, -5.0 * sigma * grad)
    torch.testing.assert_close(classifier_guidance(base, labels, LinearClassifier(), schedule, 0)(x, t),
                               torch.zeros_like(x))


@pytest.mark.parametrize("scheduler_cls", [DDPMScheduler, DDIMScheduler])
def test_classifier_guidance_steers_samples_with_ddpm_and_ddim(scheduler_cls):
    """A model that predicts the noise of N(0, I) data, guided towards 'bright', draws brighter samples."""
    schedule = NoiseSchedule.from_name("cosine", 1000)
    model = lambda x, t: x * (1 - schedule.alpha_bars[t]).sqrt().float()[:, None, None, None]  # noqa: E731
    scheduler = scheduler_cls(schedule, clip_sample=False)
    scheduler.set_timesteps(20)
    means = []
    for s in (0.0, 30.0):
        fn = classifier_guidance(model, torch.tensor([0]), LinearClassifier(), schedule, s)
        x = sample(fn, scheduler, (64, 1, 3, 3), generator=torch.Generator().manual_seed(0))
        means.append(x.mean().item())
    assert means[1] > means[0] + 0.5


def test_classifier_guidance_bad_inputs():
    schedule = NoiseSchedule.from_name("cosine", 1000)
    with pytest.raises(ValueError, match="scale must be >= 0"):
        classifier_guidance(lambda x, t: x, torch.tensor([0]), LinearClassifier(), schedule, -2.0)
    with pytest.raises(ValueError, match=r"cond must be a \(B,\) int64 tensor"):
        classifier_guidance(lambda x, t: x, torch.tensor([0.5]), LinearClassifier(), schedule, 1.0)
    fn = classifier_guidance(lambda x, t: x, torch.tensor([0, 1]), LinearClassifier(), schedule, 1.0)
    with pytest.raises(ValueError, match="cond holds 2 conditions but the batch has 3 samples"):
        fn(torch.randn(3, 1, 2, 2), torch.tensor([1, 2, 3]))


def test_classifier_gradient_uses_eval_mode_and_restores_it():
    """A BatchNorm classifier left in train mode keeps its running statistics and gets a batch-independent gradient."""
    torch.manual_seed(0)

    class BNClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn = nn.BatchNorm2d(1)
            self.head = nn.Linear(9, 2)

        def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.head(self.bn(x).flatten(1))

    clf = BNClassifier().train()
    x, t, y = torch.randn(4, 1, 3, 3), torch.zeros(4, dtype=torch.long), torch.tensor([0, 1, 0, 1])
    before = clf.bn.running_mean.clone()
    grad_all = classifier_log_prob_grad(clf, x, t, y)
    grad_one = classifier_log_prob_grad(clf, x[:1], t[:1], y[:1])
    assert clf.training and torch.equal(clf.bn.running_mean, before)
    torch.testing.assert_close(grad_all[:1], grad_one)
