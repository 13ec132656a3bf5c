"""Tests for diffusion_lab.models.noisy_classifier (and its objective and accuracy-by-timestep judge):
shapes, the default size, gradients w.r.t. the input (what classifier guidance uses), a tiny training
run, determinism, accuracy by timestep, and a clear error for every bad input. Tiny 8x8 configs keep the whole file to a few seconds on one CPU thread."""

from __future__ import annotations

import pytest
import torch

from diffusion_lab.judges.noisy_accuracy import accuracy_by_timestep
from diffusion_lab.models.noisy_classifier import NoisyClassifier, NoisyClassifierConfig
from diffusion_lab.models.unet import count_parameters
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.training import NoisyClassifierObjective, TrainConfig, fit

TINY = NoisyClassifierConfig(image_size=8, base_channels=8, channel_mults=(1, 2), num_groups=4, num_classes=2)
SCHEDULE = NoiseSchedule.from_name("cosine", 100)


def _model(config: NoisyClassifierConfig = TINY, seed: int = 0) -> NoisyClassifier:
    torch.manual_seed(seed)
    return NoisyClassifier(config)


def train_noisy_classifier(model, images, labels, schedule, *, steps=2000, batch_size=128, lr=1e-3, seed=0,
                           progress=False) -> list[float]:
    """What the mnist_noisy_classifier preset does: fit with the noise-aware objective and the judges'
    recipe (AdamW, weight decay 0.01, one-cycle); returns the loss of every step."""
    config = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed, lr_schedule="one_cycle",
                         weight_decay=0.01, ema_decay=0.0, grad_clip=None, log_every=1)
    objective = NoisyClassifierObjective(images, labels, model.config.num_classes, schedule)
    return fit(model, objective, config, progress=progress).history.losses


def _bright_vs_dark(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0: dark 8x8 images around -0.6; class 1: bright ones around +0.6. Both in [-1, 1]."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2  # (N,) int64, balanced
    level = torch.where(labels == 1, 0.6, -0.6)[:, None, None, None]  # (N, 1, 1, 1)
    images = (level + 0.2 * torch.randn(n, 1, 8, 8, generator=gen)).clamp(-1, 1)  # (N, 1, 8, 8)
    return images, labels


# ----- shapes and size ----------------------------------------------------------------------------

def test_output_shape() -> None:
    model = _model()
    logits = model(torch.randn(5, 1, 8, 8), torch.tensor([0, 1, 50, 98, 99]))
    assert logits.shape == (5, 2) and logits.dtype == torch.float32


def test_default_config_is_mnist_and_small() -> None:
    model = _model(NoisyClassifierConfig())
    assert model.config.channels == (32, 64, 128) and model.config.resolutions == (28, 14, 7)
    assert 300_000 <= count_parameters(model) <= 600_000  # 532,266
    logits = model(torch.randn(2, 1, 28, 28), torch.tensor([0, 999]))
    assert logits.shape == (2, 10)


def test_config_accepts_a_list_and_stores_a_tuple() -> None:
    config = NoisyClassifierConfig(channel_mults=[1, 2])
    assert config.channel_mults == (1, 2)
    hash(config)


# ----- gradients: what classifier guidance needs -------------------------------------------------

def test_gradient_flows_to_x() -> None:
    model = _model()
    x = torch.randn(4, 1, 8, 8, requires_grad=True)
    t = torch.tensor([0, 10, 50, 99])
    y = torch.tensor([0, 1, 0, 1])
    log_p = torch.log_softmax(model(x, t), dim=1)[torch.arange(4), y]  # (B,)
    log_p.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    assert torch.isfinite(x.grad).all()
    assert (x.grad.flatten(1).abs().sum(dim=1) > 0).all()  # every image gets its own nonzero gradient


def test_timestep_changes_the_output() -> None:
    model = _model()
    # Each ResBlock's last conv starts at zero (blocks.py), which hides t at initialisation; wake them up.
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for res in model.res:
            res.conv2.weight.copy_(0.05 * torch.randn(res.conv2.weight.shape, generator=gen))
    x = torch.randn(1, 1, 8, 8).repeat(2, 1, 1, 1)
    logits = model(x, torch.tensor([0, 99]))
    assert not torch.allclose(logits[0], logits[1])


# ----- training ------------------------------------------------------------------------------------

def test_training_learns_bright_vs_dark() -> None:
    images, labels = _bright_vs_dark()
    model = _model()
    losses = train_noisy_classifier(model, images, labels, SCHEDULE, steps=60, batch_size=32, lr=3e-3,
                                    progress=False)
    assert len(losses) == 60 and all(isinstance(v, float) for v in losses)
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10
    assert not model.training  # left in eval mode
    test_images, test_labels = _bright_vs_dark(seed=1)
    acc = accuracy_by_timestep(model, test_images, test_labels, SCHEDULE, timesteps=(0, 10, 99))
    assert acc[0] >= 0.95 and acc[10] >= 0.95
    assert acc[99] <= acc[0]  # at the last step almost nothing of x_0 is left


def test_training_is_deterministic() -> None:
    images, labels = _bright_vs_dark(32)
    runs = []
    for _ in range(2):
        model = _model(seed=3)
        losses = train_noisy_classifier(model, images, labels, SCHEDULE, steps=5, batch_size=8, seed=7,
                                        progress=False)
        runs.append((losses, model.head.weight.detach().clone()))
    assert runs[0][0] == runs[1][0]
    torch.testing.assert_close(runs[0][1], runs[1][1], rtol=0, atol=0)
    other = train_noisy_classifier(_model(seed=3), images, labels, SCHEDULE, steps=5, batch_size=8, seed=8,
                                   progress=False)
    assert other != runs[0][0]


def test_accuracy_by_timestep_keys_and_range() -> None:
    images, labels = _bright_vs_dark(30)
    model = _model()
    model.train()
    acc = accuracy_by_timestep(model, images, labels, SCHEDULE, timesteps=(99, 0, 50), batch_size=7)
    assert list(acc) == [99, 0, 50]
    assert all(0.0 <= v <= 1.0 for v in acc.values())
    assert model.training  # mode restored
    again = accuracy_by_timestep(model, images, labels, SCHEDULE, timesteps=(99, 0, 50), batch_size=30)
    assert again == acc  # batching and seeding do not change the answer


def test_accuracy_by_timestep_default_steps() -> None:
    images, labels = _bright_vs_dark(8)
    acc = accuracy_by_timestep(_model(), images, labels, NoiseSchedule.from_name("cosine", 1000))
    assert list(acc) == [0, 250, 500, 750, 999]


# ----- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(base_channels=0), "base_channels must be a positive int"),
        (dict(in_channels=True), "in_channels must be a positive int"),
        (dict(num_classes=1), "num_classes must be at least 2"),
        (dict(channel_mults=()), "channel_mults must be a non-empty tuple"),
        (dict(channel_mults=(1, 0)), "channel_mults must be a non-empty tuple"),
        (dict(channel_mults=4), "channel_mults must be a tuple"),
        (dict(image_size=30), "must be divisible by 2\\*\\*\\(levels - 1\\) = 4"),
        (dict(base_channels=12), "divisible by num_groups=8"),
    ],
)
def test_bad_config_values(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        NoisyClassifierConfig(**kwargs)


def test_bad_config_type() -> None:
    with pytest.raises(TypeError, match="NoisyClassifierConfig"):
        NoisyClassifier({"base_channels": 8})


@pytest.mark.parametrize(
    ("x", "t", "error", "match"),
    [
        (torch.randn(1, 8, 8), torch.tensor([0]), ValueError, "expects input shaped \\(B, 1, 8, 8\\)"),
        (torch.randn(2, 3, 8, 8), torch.tensor([0, 1]), ValueError, "expects input shaped \\(B, 1, 8, 8\\)"),
        (torch.randn(2, 1, 16, 16), torch.tensor([0, 1]), ValueError, "expects input shaped"),
        (torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.tensor([0, 1]), TypeError, "floating-point"),
        (torch.randn(2, 1, 8, 8, dtype=torch.float64), torch.tensor([0, 1]), TypeError, "model.to"),
        (torch.randn(2, 1, 8, 8), torch.tensor([0, 1, 2]), ValueError, "shape \\(B,\\) = \\(2,\\)"),
        (torch.randn(2, 1, 8, 8), torch.tensor(5), ValueError, "torch.full"),
        (torch.randn(2, 1, 8, 8), 5, ValueError, "shape \\(B,\\)"),
        (torch.randn(2, 1, 8, 8), torch.tensor([True, False]), TypeError, "timesteps, got dtype torch.bool"),
    ],
)
def test_bad_forward_inputs(x, t, error, match) -> None:
    with pytest.raises(error, match=match):
        _model()(x, t)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda im, lb: (im, lb[:-1]), ValueError, "16 images but 15 labels"),
        (lambda im, lb: (im, lb.float()), TypeError, "labels.long\\(\\)"),
        (lambda im, lb: (im, lb[:, None]), ValueError, "labels must be a 1-D tensor"),
        (lambda im, lb: (im[:, 0], lb), ValueError, "images must be a \\(N, C, H, W\\) tensor"),
        (lambda im, lb: ((im * 127.5 + 127.5).to(torch.uint8), lb), TypeError, "floating point"),
        (lambda im, lb: (im * 127.5 + 127.5, lb), ValueError, "scaled to \\[-1, 1\\]"),
        (lambda im, lb: (im, lb + 5), ValueError, "labels must lie in 0..1"),
        (lambda im, lb: (im[:0], lb[:0]), ValueError, "images is empty"),
    ],
)
def test_bad_training_data(change, error, match) -> None:
    images, labels = change(*_bright_vs_dark(16))
    with pytest.raises(error, match=match):
        train_noisy_classifier(_model(), images, labels, SCHEDULE, steps=1, progress=False)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(steps=0), ValueError, "steps must be a positive int"),
        (dict(batch_size=2.5), ValueError, "batch_size must be a positive int"),
        (dict(lr=0.0), ValueError, "lr must be a positive number"),
        (dict(schedule="cosine"), TypeError, "schedule must be a NoiseSchedule"),
    ],
)
def test_bad_training_arguments(kwargs, error, match) -> None:
    images, labels = _bright_vs_dark(16)
    args = dict(schedule=SCHEDULE, steps=1, progress=False) | kwargs
    schedule = args.pop("schedule")
    with pytest.raises(error, match=match):
        train_noisy_classifier(_model(), images, labels, schedule, **args)


@pytest.mark.parametrize(
    ("timesteps", "error", "match"),
    [
        ((0, 100), ValueError, "t must lie in 0..99"),
        ((0.5,), TypeError, "integer"),
        (5, TypeError, "for one step use \\(t,\\)"),
        ((), ValueError, "timesteps is empty"),
    ],
)
def test_bad_timesteps(timesteps, error, match) -> None:
    images, labels = _bright_vs_dark(8)
    with pytest.raises(error, match=match):
        accuracy_by_timestep(_model(), images, labels, SCHEDULE, timesteps=timesteps)
