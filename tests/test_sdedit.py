"""Tests for diffusion_lab.sampling.sdedit (chapter 08) and the ``start=`` argument of ``sample`` it runs on:
where SDEdit starts, that it noises x0 to exactly that step with the run's generator and then runs the
ordinary loop from there, and clear errors for a bad strength or start. Stand-in models, no training."""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_lab.sampling import (
    DDIMScheduler,
    DDPMScheduler,
    record_trajectory,
    sample,
    sdedit,
    sdedit_start,
)
from diffusion_lab.sampling.scheduler import randn
from diffusion_lab.schedules import NoiseSchedule

SCHEDULE = NoiseSchedule.from_name("cosine", 1000)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def toy_model(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A stand-in denoiser that depends on both x_t and t, so a step at the wrong t or from the wrong x_t shows."""
    return 0.3 * torch.tanh(xt) + (t.float() / 1000).view(-1, *[1] * (xt.ndim - 1))


def zero_model(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(xt)


def _scheduler(kind: str, steps: int = 20, **kwargs) -> DDPMScheduler | DDIMScheduler:
    scheduler = DDPMScheduler(SCHEDULE, **kwargs) if kind == "ddpm" else DDIMScheduler(
        SCHEDULE, eta=0.5 if kind == "ddim_eta" else 0.0, **kwargs)
    scheduler.set_timesteps(steps)
    return scheduler


def _x0(batch: int = 3) -> torch.Tensor:
    return torch.rand(batch, 1, 6, 6, generator=_gen(42)) * 2 - 1  # (B, 1, 6, 6) in [-1, 1]


# ----- where it starts ----------------------------------------------------------------------------

@pytest.mark.parametrize("steps, strength, start", [
    (50, 1.0, 0), (50, 0.0, 50), (20, 0.33, 13), (50, 0.5, 25), (10, 1, 0), (10, 0, 10), (1, 0.6, 0),
])
def test_sdedit_start(steps, strength, start):
    assert sdedit_start(steps, strength) == start


@pytest.mark.parametrize("strength", [-0.1, 1.5, True, False, "a", None, float("nan")])
def test_bad_strength_is_a_clear_error(strength):
    with pytest.raises(ValueError, match="strength must be a number from 0"):
        sdedit_start(50, strength)
    with pytest.raises(ValueError, match="strength must be a number from 0"):
        sdedit(toy_model, _scheduler("ddim"), _x0(), strength)


# ----- what it computes ---------------------------------------------------------------------------

def test_strength_zero_returns_x0_unchanged_without_calling_the_model():
    calls = []

    def model(xt, t):
        calls.append(int(t[0]))
        return toy_model(xt, t)

    x0 = _x0()
    out = sdedit(model, _scheduler("ddim"), x0, 0.0, generator=_gen(0))
    assert torch.equal(out, x0) and out is not x0 and calls == []


def hand_written_sdedit(model, scheduler, x0, strength, seed, callback=None):
    """What SDEdit is: noise x0 to timesteps[start] with the generator, then the loop from that step on."""
    generator = _gen(seed)
    start = sdedit_start(len(scheduler.timesteps), strength)
    t = int(scheduler.timesteps[start])
    eps = randn(x0.shape, generator, torch.float32, x0.device)
    alpha_bar = SCHEDULE.alpha_bars[t]
    xt = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps
    return sample(model, scheduler, x0.shape, generator=generator, x_T=xt, start=start, callback=callback)


@pytest.mark.parametrize("kind", ["ddim", "ddim_eta", "ddpm"])
@pytest.mark.parametrize("strength", [1.0, 0.5, 0.33, 0.05])
def test_sdedit_equals_noising_then_sampling_from_the_start_step(kind, strength):
    x0 = _x0()
    got = sdedit(toy_model, _scheduler(kind), x0, strength, generator=_gen(7))
    want = hand_written_sdedit(toy_model, _scheduler(kind), x0, strength, seed=7)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(got, sdedit(toy_model, _scheduler(kind), x0, strength, generator=_gen(8)))


@pytest.mark.parametrize("strength", [1.0, 0.5, 0.2])
def test_with_a_zero_model_ddim_undoes_exactly_the_noise_of_the_start_step(strength):
    """eps_pred = 0 makes every DDIM step x -> sqrt(abar_prev / abar_t) x, so the run ends at x_t / sqrt(abar_t)
    = x0 + sqrt(1 / abar_t - 1) eps for t = timesteps[start]: a check independent of ``sample``."""
    scheduler = _scheduler("ddim", clip_sample=False)
    x0 = _x0()
    out = sdedit(zero_model, scheduler, x0, strength, generator=_gen(3))
    t = int(scheduler.timesteps[sdedit_start(20, strength)])
    alpha_bar = float(SCHEDULE.alpha_bars[t])
    eps = torch.randn(x0.shape, generator=_gen(3))
    torch.testing.assert_close(out, x0 + math.sqrt(1 / alpha_bar - 1) * eps, rtol=1e-4, atol=1e-4)


def test_less_strength_keeps_more_of_the_picture():
    x0 = _x0(8)
    distance = [float((sdedit(toy_model, _scheduler("ddim"), x0, s, generator=_gen(0)) - x0).pow(2).mean())
                for s in (0.1, 0.5, 1.0)]
    assert distance[0] < distance[1] < distance[2]


def test_sdedit_runs_only_the_last_steps_and_its_callback_counts_from_zero():
    seen_t = []

    def model(xt, t):
        seen_t.append(int(t[0]))
        return toy_model(xt, t)

    scheduler = _scheduler("ddim")
    trajectory = record_trajectory()
    sdedit(model, scheduler, _x0(), 0.33, generator=_gen(0), callback=trajectory)
    assert seen_t == scheduler.timesteps.tolist()[13:]
    assert trajectory.steps == list(range(7)) and trajectory.timesteps == seen_t


def test_sdedit_rejects_integer_pictures():
    with pytest.raises((TypeError, ValueError), match="x0"):
        sdedit(toy_model, _scheduler("ddim"), torch.zeros(2, 1, 6, 6, dtype=torch.int64), 0.5)


# ----- sample(..., start=k) -----------------------------------------------------------------------

@pytest.mark.parametrize("start", [-1, 20, 21, True, 2.0, "3", None])
def test_sample_rejects_a_start_out_of_range(start):
    with pytest.raises(ValueError, match=r"start must be an int from 0 to 19"):
        sample(toy_model, _scheduler("ddim"), (2, 1, 6, 6), generator=_gen(0), start=start)


@pytest.mark.parametrize("start", [0, 5, 19])
def test_sample_from_start_visits_the_remaining_timesteps_and_counts_from_zero(start):
    scheduler = _scheduler("ddpm")
    calls = []
    x_T = torch.randn(2, 1, 6, 6, generator=_gen(1))
    sample(toy_model, scheduler, (2, 1, 6, 6), generator=_gen(0), x_T=x_T, start=start,
           callback=lambda i, t, xt, x0: calls.append((i, t)))
    ts = scheduler.timesteps.tolist()[start:]
    assert calls == list(enumerate(ts))


def test_sample_from_start_continues_a_full_run():
    """Stopping a deterministic DDIM run after k steps and restarting it with start=k from where it stopped
    gives the same samples as the uninterrupted run."""
    scheduler = _scheduler("ddim")
    x_T = torch.randn(2, 1, 6, 6, generator=_gen(1))
    middle = {}
    full = sample(toy_model, scheduler, x_T.shape, x_T=x_T,
                  callback=lambda i, t, xt, x0: middle.setdefault(i, xt.clone()))
    resumed = sample(toy_model, scheduler, x_T.shape, x_T=middle[7], start=8)
    torch.testing.assert_close(resumed, full, rtol=0, atol=0)
