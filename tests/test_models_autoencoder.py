"""Tests for diffusion_lab.models.autoencoder (chapter 08): the presets' latent shapes, padding and cropping,
the Gaussian posterior (reparameterised sample, KL), clear errors for bad inputs and configs, the
time-free ResBlock, and the autoencoder's training objective."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from diffusion_lab.models.autoencoder import Autoencoder, AutoencoderConfig, DiagonalGaussian
from diffusion_lab.models.blocks import ResBlock
from diffusion_lab.training import TrainConfig
from diffusion_lab.training.autoencoder import AutoencoderObjective, autoencoder_loss


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _model(config: AutoencoderConfig, seed: int = 0) -> Autoencoder:
    torch.manual_seed(seed)
    return Autoencoder(config).eval()


def _images(config: AutoencoderConfig, batch: int = 2, seed: int = 0) -> torch.Tensor:
    shape = (batch, config.in_channels, config.image_size, config.image_size)
    return torch.rand(shape, generator=_gen(seed)) * 2 - 1  # (B, C, H, W) in [-1, 1]


# ----- shapes -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, image, latent", [
    ("tiny", (1, 28, 28), (4, 8, 8)),
    ("mnist", (1, 28, 28), (4, 8, 8)),  # 28 padded to 32, f = 4
    ("shapes64", (3, 64, 64), (4, 16, 16)),
])
def test_preset_latent_and_reconstruction_shapes(name, image, latent):
    config = getattr(AutoencoderConfig, name)()
    assert (config.in_channels, config.image_size, config.image_size) == image
    assert config.latent_shape == latent and config.factor == 4
    model = _model(config)
    x = _images(config)
    with torch.no_grad():
        q = model.posterior(x)
        assert q.mean.shape == q.logvar.shape == (2, *latent)
        assert model.reconstruct(q.mean).shape == (2, *image)  # cropped back to the input's size
        x_hat, q2 = model(x, generator=_gen(1))
    assert x_hat.shape == x.shape and q2.mean.shape == (2, *latent)


def test_mnist_pads_28_to_32():
    config = AutoencoderConfig.mnist()
    assert config.pad_to == 32 and config.padded_size == 32 and config.pad_value == -1.0
    assert AutoencoderConfig.shapes64().padded_size == 64  # no padding


def test_posterior_pads_with_the_background_value_on_every_side():
    """The encoder sees the picture in the middle of a 32 x 32 frame of -1: what a wrong offset or pad
    value would change."""
    config = AutoencoderConfig.tiny()
    model = _model(config)
    x = _images(config)
    with torch.no_grad():
        want_mean, want_logvar = model.encoder(F.pad(x, (2, 2, 2, 2), value=-1.0)).chunk(2, dim=1)
        q = model.posterior(x)
    torch.testing.assert_close(q.mean, want_mean)
    torch.testing.assert_close(q.logvar, want_logvar)


def test_reconstruct_crops_the_centre():
    config = AutoencoderConfig.tiny()
    model = _model(config)
    z = torch.randn(2, *config.latent_shape, generator=_gen(0))
    with torch.no_grad():
        full = model.decoder(z)  # (2, 1, 32, 32)
        assert full.shape == (2, 1, 32, 32)
        torch.testing.assert_close(model.reconstruct(z), full[..., 2:30, 2:30])


@pytest.mark.parametrize("bad", [
    torch.zeros(2, 1, 32, 32),  # already padded
    torch.zeros(2, 3, 28, 28),  # wrong channels
    torch.zeros(1, 28, 28),  # no batch dimension
    torch.zeros(2, 1, 28, 27),
])
def test_posterior_rejects_wrong_shapes(bad):
    with pytest.raises(ValueError, match=r"takes pictures shaped \(B, 1, 28, 28\), got"):
        _model(AutoencoderConfig.tiny()).posterior(bad)


def test_posterior_rejects_a_non_tensor():
    with pytest.raises(ValueError, match="got ndarray"):
        _model(AutoencoderConfig.tiny()).posterior(torch.zeros(2, 1, 28, 28).numpy())


@pytest.mark.parametrize("bad", [torch.zeros(2, 4, 7, 7), torch.zeros(2, 8, 8, 8), torch.zeros(4, 8, 8)])
def test_reconstruct_rejects_wrong_latent_shapes(bad):
    with pytest.raises(ValueError, match=r"takes latents shaped \(B, 4, 8, 8\), got"):
        _model(AutoencoderConfig.tiny()).reconstruct(bad)


def test_shapes64_rejects_mnist_sized_pictures():
    with pytest.raises(ValueError, match=r"\(B, 3, 64, 64\)"):
        _model(AutoencoderConfig.shapes64()).posterior(torch.zeros(1, 1, 28, 28))


# ----- configs ------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, message", [
    ({"pad_to": 24}, "pad_to must be an int >= 28"),  # smaller than the picture
    ({"pad_to": 30}, "must be divisible by 2\\*\\*\\(levels - 1\\) = 4"),  # 30 does not halve twice
    ({"pad_to": None, "channel_mults": (1, 2, 2, 2)}, "image_size 28 must be divisible by 2\\*\\*\\(levels - 1\\) = 8"),
    ({"base_channels": 10}, "must be divisible by num_groups=4"),
    ({"num_groups": 3}, "must be divisible by num_groups=3"),
    ({"channel_mults": ()}, "channel_mults must be a non-empty"),
    ({"latent_channels": 0}, "latent_channels must be a positive int"),
    ({"in_channels": True}, "in_channels must be a positive int"),
    ({"pad_value": float("nan")}, "pad_value must be a finite number"),
    ({"pad_value": "black"}, "pad_value must be a finite number"),
])
def test_bad_configs_are_clear_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(AutoencoderConfig.tiny(), **changes)


def test_without_padding_28_gives_a_7x7_latent():
    """f = 4 divides 28, so no padding is needed for the shape alone (a U-Net over 7 x 7 could not halve it)."""
    config = dataclasses.replace(AutoencoderConfig.tiny(), pad_to=None)
    assert config.padded_size == 28 and config.latent_shape == (4, 7, 7)
    with torch.no_grad():
        assert _model(config).posterior(_images(config)).mean.shape == (2, 4, 7, 7)


# ----- the Gaussian posterior ---------------------------------------------------------------------

def test_sample_with_given_noise_is_mean_plus_std_times_noise():
    g = _gen(0)
    mean, logvar, noise = (torch.randn(3, 4, 2, 2, generator=g) for _ in range(3))
    q = DiagonalGaussian(mean, logvar)
    torch.testing.assert_close(q.sample(noise), mean + torch.exp(0.5 * logvar) * noise)
    torch.testing.assert_close(q.std, torch.exp(0.5 * logvar))


def test_sample_from_a_generator_is_reproducible_and_random():
    q = DiagonalGaussian(torch.zeros(2, 4, 3, 3), torch.zeros(2, 4, 3, 3))
    a, b, c = q.sample(generator=_gen(1)), q.sample(generator=_gen(1)), q.sample(generator=_gen(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.testing.assert_close(a, torch.randn(2, 4, 3, 3, generator=_gen(1)))  # mean 0, std 1: the noise itself


def test_kl_matches_the_closed_form_and_torch_distributions():
    g = _gen(0)
    mean, logvar = torch.randn(3, 4, 2, 2, generator=g), torch.randn(3, 4, 2, 2, generator=g)
    kl = DiagonalGaussian(mean, logvar).kl()
    assert kl.shape == (3,)
    by_hand = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum(dim=(1, 2, 3))
    torch.testing.assert_close(kl, by_hand)
    q = torch.distributions.Normal(mean, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    torch.testing.assert_close(kl, torch.distributions.kl_divergence(q, p).sum(dim=(1, 2, 3)))
    assert (kl > 0).all()


def test_kl_is_zero_for_the_standard_normal():
    kl = DiagonalGaussian(torch.zeros(2, 4, 8, 8), torch.zeros(2, 4, 8, 8)).kl()
    assert torch.equal(kl, torch.zeros(2))


def test_gradients_flow_to_mean_and_logvar_through_sample():
    mean = torch.randn(2, 4, 2, 2, generator=_gen(0), requires_grad=True)
    logvar = torch.randn(2, 4, 2, 2, generator=_gen(1), requires_grad=True)
    noise = torch.randn(2, 4, 2, 2, generator=_gen(2))
    DiagonalGaussian(mean, logvar).sample(noise).sum().backward()
    torch.testing.assert_close(mean.grad, torch.ones_like(mean))
    torch.testing.assert_close(logvar.grad, 0.5 * torch.exp(0.5 * logvar.detach()) * noise)


def test_logvar_is_clamped_so_exp_stays_finite():
    q = DiagonalGaussian(torch.zeros(1, 1, 1, 2), torch.tensor([[[[-1000.0, 1000.0]]]]))
    assert q.logvar.flatten().tolist() == [-30.0, 20.0]
    assert torch.isfinite(q.std).all() and torch.isfinite(q.kl()).all()


# ----- the model's buffers and parts --------------------------------------------------------------

def test_latent_scale_is_a_nan_buffer_until_measured():
    model = _model(AutoencoderConfig.tiny())
    assert "latent_scale" in dict(model.named_buffers()) and "latent_scale" in model.state_dict()
    assert "latent_scale" not in dict(model.named_parameters())
    assert math.isnan(float(model.latent_scale))


def test_gradients_reach_encoder_and_decoder():
    config = AutoencoderConfig.tiny()
    model = _model(config).train()
    x = _images(config)
    noise = torch.randn(2, *config.latent_shape, generator=_gen(1))
    autoencoder_loss(model, x, noise, kl_weight=1e-4).mean().backward()
    assert model.encoder.conv_in.weight.grad.abs().sum() > 0
    assert model.decoder.conv_out.weight.grad.abs().sum() > 0


def test_res_block_without_embedding():
    block = ResBlock(8, 16, None, 4)
    assert block.emb_proj is None
    x = torch.randn(2, 8, 4, 4, generator=_gen(0))
    assert block(x).shape == (2, 16, 4, 4)
    with_emb = ResBlock(8, 16, 12, 4)  # the U-Net's: the embedding is still read
    assert with_emb.emb_proj is not None
    assert with_emb(x, torch.randn(2, 12)).shape == (2, 16, 4, 4)


# ----- the objective ------------------------------------------------------------------------------

def test_autoencoder_loss_is_l1_plus_weighted_kl_per_picture():
    config = AutoencoderConfig.tiny()
    model = _model(config)
    x = _images(config, batch=3)
    noise = torch.randn(3, *config.latent_shape, generator=_gen(1))
    with torch.no_grad():
        loss = autoencoder_loss(model, x, noise, kl_weight=0.5)
        x_hat, q = model(x, noise)
    assert loss.shape == (3,)
    want = (x_hat - x).abs().mean(dim=(1, 2, 3)) + 0.5 * q.kl() / 784
    torch.testing.assert_close(loss, want)


def test_objective_draws_noise_of_the_latent_shape_and_finish_measures_the_scale():
    config = AutoencoderConfig.tiny()
    model = _model(config)
    images = _images(config, batch=6)
    objective = AutoencoderObjective(images, config.latent_shape, kl_weight=1e-4)
    batch = objective.draw(_gen(0), TrainConfig(steps=1, batch_size=4))
    assert batch["x"].shape == (4, 1, 28, 28) and batch["noise"].shape == (4, 4, 8, 8)
    assert objective.loss(model, batch).shape == (4,)
    finished = objective.finish(model)
    assert set(finished) == {"latent_scale"} and math.isfinite(finished["latent_scale"])
    assert float(model.latent_scale) == pytest.approx(finished["latent_scale"], rel=1e-6)


def test_objective_rejects_non_finite_images():
    images = torch.zeros(4, 1, 28, 28)
    images[2, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        AutoencoderObjective(images, (4, 8, 8))
