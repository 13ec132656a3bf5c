"""Tests for diffusion_lab.models.unet: shapes for every preset, conditioning, gradients, the shape
trace, parameter counts, determinism, dtypes, a tiny overfit, and a clear error for every bad input."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from fresh_weights import awake

from diffusion_lab.models import SelfAttention, UNet, UNetConfig, count_parameters, shape_trace
from diffusion_lab.models.blocks import Upsample

PRESETS = {"tiny": UNetConfig.tiny(), "mnist": UNetConfig.mnist(), "mnist_conditional": UNetConfig.mnist_conditional()}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _inputs(config: UNetConfig, batch: int = 2, size: int | None = None, seed: int = 0):
    size = size or config.image_size
    x = torch.randn(batch, config.in_channels, size, size, generator=_gen(seed))  # (B, C, H, W)
    t = torch.randint(0, 1000, (batch,), generator=_gen(seed + 1))  # (B,)
    return x, t




def _model(config: UNetConfig, seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    return UNet(config)


# ----- shapes -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", PRESETS)
def test_preset_output_shape_equals_input_shape(name: str) -> None:
    config = PRESETS[name]
    model = _model(config)
    x, t = _inputs(config)
    eps_pred = model(x, t)
    assert eps_pred.shape == (2, config.out_channels, 28, 28)
    assert torch.count_nonzero(eps_pred) == 0  # zero-initialised output conv: the model starts at eps_pred = 0


@pytest.mark.parametrize("name", ["tiny", "mnist"])
def test_32x32_and_rgb(name: str) -> None:
    config = dataclasses.replace(PRESETS[name], image_size=32, in_channels=3, out_channels=3)
    model = awake(_model(config))
    x, t = _inputs(config)
    assert model(x, t).shape == (2, 3, 32, 32)


def test_out_channels_can_differ_from_in_channels() -> None:
    config = dataclasses.replace(UNetConfig.tiny(), out_channels=2)  # e.g. eps and a variance
    assert _model(config)(*_inputs(config)).shape == (2, 2, 28, 28)


def test_attention_resolutions_and_mid_attention() -> None:
    tiny = UNetConfig.tiny()
    n_attn = lambda m: sum(isinstance(mod, SelfAttention) for mod in m.modules())  # noqa: E731
    assert n_attn(UNet(tiny)) == 1  # the middle block only
    assert n_attn(UNet(dataclasses.replace(tiny, mid_attention=False))) == 0
    model = UNet(dataclasses.replace(tiny, attention_resolutions=(14, 7)))
    assert n_attn(model) == 1 + 2 * 2  # middle, plus one after each down and up ResBlock at 14 and 7
    names = [name for name, _ in shape_trace(model, *_inputs(tiny))]
    assert {"down.1.attn.0", "up.1.attn.0", "down.2.attn.0", "up.2.attn.0", "mid.attn"} <= set(names)


def test_two_res_blocks_per_level() -> None:
    config = dataclasses.replace(UNetConfig.tiny(), num_res_blocks=2)
    model = awake(_model(config))
    assert model(*_inputs(config)).shape == (2, 1, 28, 28)
    names = [name for name, _ in shape_trace(model, *_inputs(config))]
    assert names.count("down.0.res.1") == names.count("up.0.res.1") == 1


# ----- the shape trace (chapter 03) ---------------------------------------------------------------

def test_shape_trace_lists_down_mid_up_with_resolutions() -> None:
    model = _model(UNetConfig.mnist())
    x, t = _inputs(UNetConfig.mnist())
    trace = shape_trace(model, x, t)
    assert trace == [
        ("conv_in", (2, 32, 28, 28)),
        ("down.0.res.0", (2, 32, 28, 28)),
        ("down.0.resample", (2, 64, 14, 14)),
        ("down.1.res.0", (2, 64, 14, 14)),
        ("down.1.resample", (2, 128, 7, 7)),
        ("down.2.res.0", (2, 128, 7, 7)),
        ("mid.res1", (2, 128, 7, 7)),
        ("mid.attn", (2, 128, 7, 7)),
        ("mid.res2", (2, 128, 7, 7)),
        ("up.2.res.0", (2, 128, 7, 7)),
        ("up.2.resample", (2, 64, 14, 14)),
        ("up.1.res.0", (2, 64, 14, 14)),
        ("up.1.resample", (2, 32, 28, 28)),
        ("up.0.res.0", (2, 32, 28, 28)),
        ("conv_out", (2, 1, 28, 28)),
    ]
    assert all(not m._forward_hooks for m in model.modules())  # the hooks are gone again
    assert shape_trace(model, x, t) == trace


# ----- conditioning -------------------------------------------------------------------------------

def test_class_labels_change_the_output() -> None:
    config = dataclasses.replace(UNetConfig.tiny(), num_classes=10)
    model = awake(_model(config)).eval()
    x, t = _inputs(config)
    out_3 = model(x, t, torch.tensor([3, 3]))
    out_7 = model(x, t, torch.tensor([7, 7]))
    assert (out_3 - out_7).abs().max() > 1e-4
    torch.testing.assert_close(model(x, t, torch.tensor([3, 7]))[0], out_3[0])


def test_null_class_is_the_default_and_has_its_own_row() -> None:
    config = UNetConfig.mnist_conditional()
    model = awake(_model(config)).eval()
    assert model.class_embed.num_embeddings == config.num_classes + 1
    x, t = _inputs(config)
    null = torch.full((2,), config.num_classes)
    torch.testing.assert_close(model(x, t), model(x, t, null))
    assert (model(x, t, null) - model(x, t, torch.tensor([0, 0]))).abs().max() > 1e-4


def test_timestep_changes_the_output() -> None:
    model = awake(_model(UNetConfig.tiny())).eval()
    x, _ = _inputs(UNetConfig.tiny())
    out = [model(x, torch.tensor([s, s])) for s in (0, 500)]
    assert (out[0] - out[1]).abs().max() > 1e-4


# ----- gradients, parameters, determinism, dtypes -------------------------------------------------

@pytest.mark.parametrize("name", ["tiny", "mnist_conditional"])
def test_gradients_reach_every_parameter(name: str) -> None:
    config = PRESETS[name]
    model = awake(_model(config))
    x, t = _inputs(config)
    labels = torch.tensor([1, config.num_classes]) if config.num_classes else None
    model(x, t, labels).square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


def test_zero_init_still_trains() -> None:
    # With the zero-initialised convs only the output conv gets a gradient at first; one step wakes up the rest.
    model = _model(UNetConfig.tiny())
    x, t = _inputs(UNetConfig.tiny())
    model(x, t).sub(x).square().mean().backward()
    assert model.conv_out.weight.grad.abs().sum() > 0
    assert model.conv_in.weight.grad.abs().sum() == 0


@pytest.mark.parametrize(("name", "low", "high"), [("tiny", 50_000, 200_000), ("mnist", 1_000_000, 4_000_000),
                                                   ("mnist_conditional", 1_000_000, 4_000_000)])
def test_parameter_counts_match_the_documented_ranges(name: str, low: int, high: int) -> None:
    config = PRESETS[name]
    n = count_parameters(UNet(config))
    assert low <= n <= high, n
    if config.num_classes:
        unconditional = count_parameters(UNet(dataclasses.replace(config, num_classes=None)))
        assert n - unconditional == (config.num_classes + 1) * config.time_embed_dim


def test_count_parameters_trainable_only() -> None:
    model = UNet(UNetConfig.tiny())
    total = count_parameters(model)
    model.conv_in.requires_grad_(False)
    assert count_parameters(model) == total - model.conv_in.weight.numel() - model.conv_in.bias.numel()
    assert count_parameters(model, trainable_only=False) == total


def test_deterministic_under_a_seed() -> None:
    config = UNetConfig.tiny()
    a, b = awake(_model(config, seed=3)), awake(_model(config, seed=3))
    x, t = _inputs(config)
    torch.testing.assert_close(a(x, t), b(x, t), rtol=0, atol=0)
    c = awake(_model(config, seed=4))
    assert not torch.equal(a(x, t), c(x, t))


def test_float64_model_and_input() -> None:
    model = awake(_model(UNetConfig.tiny())).eval()
    x, t = _inputs(UNetConfig.tiny())
    out32 = model(x, t)
    out64 = model.double()(x.double(), t)
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), out32, rtol=1e-3, atol=1e-4)


def test_bfloat16_autocast_runs() -> None:
    model = awake(_model(UNetConfig.tiny()))
    x, t = _inputs(UNetConfig.tiny())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, t)
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_float_timesteps_and_int32_labels() -> None:
    config = dataclasses.replace(UNetConfig.tiny(), num_classes=3)
    x, _ = _inputs(config)
    assert _model(config)(x, torch.tensor([0.5, 10.0]), torch.tensor([0, 3], dtype=torch.int32)).shape == x.shape


def test_dropout_only_in_training_mode() -> None:
    config = dataclasses.replace(UNetConfig.tiny(), dropout=0.5)
    model = awake(_model(config))
    x, t = _inputs(config)
    model.eval()
    torch.testing.assert_close(model(x, t), model(x, t))
    model.train()
    assert not torch.equal(model(x, t), model(x, t))


def test_upsample_convolves_then_repeats() -> None:
    up = Upsample(4, 2)
    x = torch.randn(1, 4, 5, 5, generator=_gen(0))
    expected = up.conv(x).repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # (1, 2, 10, 10)
    torch.testing.assert_close(up(x), expected)


# ----- learning ------------------------------------------------------------------------------------

def _mnist_like_images(n: int) -> torch.Tensor:
    """n fixed 28x28 images in [-1, 1]: a dark background with two bright random strokes each."""
    gen = _gen(0)
    images = -torch.ones(n, 1, 28, 28)
    for img in images:
        for _ in range(2):
            r, c = torch.randint(4, 20, (2,), generator=gen).tolist()
            if torch.rand((), generator=gen) < 0.5:
                img[0, r : r + 3, c : c + 8] = 1.0  # a horizontal stroke
            else:
                img[0, r : r + 8, c : c + 3] = 1.0  # a vertical stroke
    return images


def test_tiny_overfits_eight_images() -> None:
    torch.manual_seed(0)
    model = UNet(UNetConfig.tiny())
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x0 = _mnist_like_images(8)  # (8, 1, 28, 28)
    gen = _gen(1)
    alpha_bars = torch.cos(torch.linspace(0, 1, 1000) * torch.pi / 2).clamp(min=1e-4) ** 2  # a cosine-like schedule
    losses = []
    for _ in range(60):
        t = torch.randint(0, 1000, (8,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        ab = alpha_bars[t][:, None, None, None]  # (8, 1, 1, 1)
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps  # DDPM eq. 4
        loss = (model(xt, t) - eps).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-10:]) / 10
    assert last < 0.3 * first, (first, last)  # about 0.83 -> 0.12 when written


# ----- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"image_size": 30}, "divisible by 2\\*\\*\\(levels - 1\\) = 4"),
        ({"base_channels": 30}, "divisible by num_groups=8"),
        ({"attention_resolutions": (5,)}, "attention resolution 5 is never reached"),
        ({"num_heads": 3}, "num_heads=3"),
        ({"dropout": 1.0}, "dropout"),
        ({"num_classes": 0}, "num_classes"),
        ({"channel_mults": ()}, "channel_mults"),
        ({"channel_mults": (1, 0)}, "channel_mults"),
        ({"in_channels": 0}, "in_channels must be a positive int"),
        ({"num_res_blocks": 1.5}, "num_res_blocks must be a positive int"),
        ({"mid_attention": "yes"}, "mid_attention"),
    ],
)
def test_bad_config(changes: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(UNetConfig.mnist(), **changes)


def test_config_is_frozen_and_accepts_lists() -> None:
    config = UNetConfig(channel_mults=[1, 2, 2], attention_resolutions=[14])
    assert config.channel_mults == (1, 2, 2) and config.attention_resolutions == (14,)
    assert config == dataclasses.replace(config) and hash(config) == hash(dataclasses.replace(config))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.base_channels = 64
    with pytest.raises(TypeError, match="UNetConfig"):
        UNet({"base_channels": 32})


@pytest.fixture(scope="module")
def tiny_models() -> tuple[UNet, UNet]:
    return UNet(UNetConfig.tiny()), UNet(dataclasses.replace(UNetConfig.tiny(), num_classes=10))


X, T = torch.zeros(2, 1, 28, 28), torch.tensor([1, 2])


@pytest.mark.parametrize(
    ("x", "t", "error", "match"),
    [
        (torch.zeros(1, 28, 28), T, ValueError, "expects input shaped \\(B, 1, \\?, \\?\\)"),
        ([[0.0]], T, ValueError, "expects input shaped \\(B, 1, \\?, \\?\\), got list"),
        (torch.zeros(2, 3, 28, 28), T, ValueError, "expects input shaped \\(B, 1, \\?, \\?\\), got \\(2, 3, 28, 28\\)"),
        (torch.zeros(2, 1, 30, 30), T, ValueError, "divisible by 4"),
        (torch.zeros(2, 1, 28, 28, dtype=torch.uint8), T, TypeError, "floating-point"),
        (X.double(), T, TypeError, "float64 but the model's parameters are torch.float32"),
        (X, torch.tensor(5), ValueError, "t must be a tensor of shape \\(B,\\) = \\(2,\\)"),
        (X, torch.tensor([1, 2, 3]), ValueError, "t must be a tensor of shape"),
        (X, 5, ValueError, "torch.full"),
        (X, torch.tensor([True, False]), TypeError, "timesteps"),
    ],
)
def test_bad_x_or_t(tiny_models, x, t, error, match) -> None:
    with pytest.raises(error, match=match):
        tiny_models[0](x, t)


@pytest.mark.parametrize(
    ("labels", "error", "match"),
    [
        (torch.tensor([1]), ValueError, "cond must be a tensor of class indices of shape \\(B,\\) = \\(2,\\)"),
        ([1, 2], ValueError, "cond must be a tensor"),
        (torch.tensor([1.0, 2.0]), TypeError, "integer class indices"),
        (torch.tensor([0, 11]), ValueError, "in \\[0, 10\\] \\(10 is the null class\\)"),
        (torch.tensor([-1, 3]), ValueError, "in \\[0, 10\\]"),
    ],
)
def test_bad_class_labels(tiny_models, labels, error, match) -> None:
    with pytest.raises(error, match=match):
        tiny_models[1](X, T, labels)


def test_labels_for_an_unconditional_model(tiny_models) -> None:
    with pytest.raises(ValueError, match="unconditional model"):
        tiny_models[0](X, T, torch.tensor([1, 2]))
