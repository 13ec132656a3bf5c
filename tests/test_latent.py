"""Tests for diffusion_lab.latent (chapter 08): the latent scale s is measured once, saved with the weights,
and applied exactly once on each side, by encode (z = s E(x)) and decode (x = D(z / s)) only.

Untrained tiny autoencoders check the arithmetic; the preset test trains one for a few steps through the
CLI's train_command; the last test checks the shipped mnist_autoencoder on held-out test digits.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from diffusion_lab.cli.commands import train_command
from diffusion_lab.data import mnist_tensors
from diffusion_lab.latent import decode, encode, measure_latent_scale
from diffusion_lab.models.autoencoder import Autoencoder, AutoencoderConfig
from diffusion_lab.pretrained import load_pretrained, read_manifest, save_pretrained


@pytest.fixture(autouse=True)
def cpu_only(monkeypatch):
    monkeypatch.setenv("DIFFUSION_LAB_DEVICE", "cpu")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=_gen(seed)) * 2 - 1  # (N, 1, 28, 28) in [-1, 1]


def _autoencoder(seed: int = 0) -> Autoencoder:
    torch.manual_seed(seed)
    return Autoencoder(AutoencoderConfig.tiny()).eval()


# ----- the scale must be measured -----------------------------------------------------------------

def test_encode_and_decode_refuse_an_unmeasured_scale():
    model = _autoencoder()
    assert math.isnan(float(model.latent_scale))
    with pytest.raises(ValueError, match="measure_latent_scale"):
        encode(model, _images(2))
    with pytest.raises(ValueError, match="measure_latent_scale"):
        decode(model, torch.zeros(2, 4, 8, 8))


@pytest.mark.parametrize("bad", [0.0, -0.5, float("inf")])
def test_encode_refuses_a_scale_that_is_not_positive_and_finite(bad):
    model = _autoencoder()
    model.latent_scale.fill_(bad)
    with pytest.raises(ValueError, match="measure_latent_scale"):
        encode(model, _images(2))


def test_measure_needs_more_than_one_picture():
    with pytest.raises(ValueError, match="many pictures"):
        measure_latent_scale(_autoencoder(), _images(1))


# ----- measuring and applying it ------------------------------------------------------------------

def test_measured_scale_gives_unit_std_latents():
    model = _autoencoder()
    x = _images(24)
    s = measure_latent_scale(model, x, batch_size=10)  # batches of 10, 10 and 4
    assert math.isfinite(s) and s > 0
    assert float(model.latent_scale) == pytest.approx(s, rel=1e-6)
    with torch.no_grad():
        means = model.posterior(x).mean
    assert s == pytest.approx(1 / float(means.double().std()), rel=1e-6)
    z = encode(model, x)
    assert z.shape == (24, 4, 8, 8) and z.dtype == torch.float32
    assert float(z.std()) == pytest.approx(1.0, abs=1e-4)


def test_encode_is_the_posterior_mean_times_s_whatever_the_batch_size():
    model = _autoencoder()
    model.latent_scale.fill_(4.0)
    x = _images(7)
    with torch.no_grad():
        want = model.posterior(x).mean * 4.0
    torch.testing.assert_close(encode(model, x), want)
    torch.testing.assert_close(encode(model, x, batch_size=3), want)


def test_decode_is_reconstruct_of_z_over_s_clipped():
    model = _autoencoder()
    model.latent_scale.fill_(4.0)
    z = torch.randn(5, 4, 8, 8, generator=_gen(3)) * 3
    with torch.no_grad():
        want = model.reconstruct(z / 4.0).clamp(-1, 1)
    x = decode(model, z, batch_size=2)
    assert x.shape == (5, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    torch.testing.assert_close(x, want)


def test_decode_of_encode_applies_the_scale_exactly_once():
    """decode(encode(x)) is D(E(x)): s cancels. Applying s twice, or on one side only, would decode s E(x),
    E(x) / s or s^2 E(x), which differ from D(E(x)) for s far from 1 (checked here, so the test has teeth)."""
    model = _autoencoder()
    s = measure_latent_scale(model, _images(16, seed=1))
    model.latent_scale.fill_(s * 8)  # a scale far from 1 whatever the untrained encoder's spread
    s = float(model.latent_scale)
    x = _images(6)
    with torch.no_grad():
        mean = model.posterior(x).mean
        want = model.reconstruct(mean).clamp(-1, 1)
        for wrong in (mean * s, mean / s, mean * s * s):
            assert not torch.allclose(model.reconstruct(wrong).clamp(-1, 1), want, atol=1e-4)
    got = decode(model, encode(model, x))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_encode_and_decode_keep_the_training_mode():
    model = _autoencoder().train()
    model.latent_scale.fill_(2.0)
    decode(model, encode(model, _images(2)))
    assert model.training


# ----- the scale travels with the weights ---------------------------------------------------------

def _measured(seed: int = 0) -> Autoencoder:
    model = _autoencoder(seed)
    with torch.no_grad():  # the last convs start at zero: make the output depend on every weight
        model.decoder.conv_out.weight.normal_(0, 0.1, generator=_gen(seed + 10))
    measure_latent_scale(model, _images(8))
    return model


def test_scale_survives_save_and_load(tmp_path):
    model = _measured()
    save_pretrained("ae", model, model.config, kind="autoencoder", schedule=None, made_by={}, root=tmp_path)
    assert load_file(str(tmp_path / "ae.safetensors"))["latent_scale"].dtype == torch.float32
    pre = load_pretrained("ae", root=tmp_path)
    assert isinstance(pre.model, Autoencoder) and pre.schedule is None and pre.model.config == model.config
    assert torch.equal(pre.model.latent_scale, model.latent_scale)
    x = _images(3)
    torch.testing.assert_close(encode(pre.model, x), encode(model, x), rtol=0, atol=0)
    torch.testing.assert_close(decode(pre.model, encode(model, x)), decode(model, encode(model, x)), rtol=0, atol=0)


def test_an_unmeasured_scale_is_saved_as_nan_and_refused_after_loading(tmp_path):
    model = _autoencoder()
    save_pretrained("ae", model, model.config, kind="autoencoder", schedule=None, made_by={}, root=tmp_path)
    pre = load_pretrained("ae", root=tmp_path)
    assert math.isnan(float(pre.model.latent_scale))
    with pytest.raises(ValueError, match="measure_latent_scale"):
        encode(pre.model, _images(2))


def test_float16_stores_parameters_in_half_and_keeps_the_scale_exact(tmp_path):
    model = _measured()
    model.latent_scale.fill_(1 / 3)  # not representable in float16: a half-precision round trip would change it
    save_pretrained("full", model, model.config, kind="autoencoder", schedule=None, made_by={}, root=tmp_path)
    save_pretrained("half", model, model.config, kind="autoencoder", schedule=None, made_by={}, root=tmp_path,
                    float16=True)
    stored = load_file(str(tmp_path / "half.safetensors"))
    parameters = dict(model.named_parameters())
    assert set(stored) == set(model.state_dict())
    for name, tensor in stored.items():
        assert tensor.dtype == (torch.float16 if name in parameters else torch.float32), name
    assert torch.equal(stored["latent_scale"], model.latent_scale)
    full, half = (tmp_path / "full.safetensors").stat().st_size, (tmp_path / "half.safetensors").stat().st_size
    assert half < 0.6 * full

    pre = load_pretrained("half", root=tmp_path)
    for name, p in pre.model.named_parameters():  # loaded into the float32 model: computes in float32
        assert p.dtype == torch.float32
        assert torch.equal(p, parameters[name].detach().half().float()), name
    assert pre.model.latent_scale.dtype == torch.float32
    assert torch.equal(pre.model.latent_scale, model.latent_scale)
    x = _images(3)
    torch.testing.assert_close(decode(pre.model, encode(pre.model, x)), decode(model, encode(model, x)),
                               atol=1e-2, rtol=0)


# ----- the preset path ----------------------------------------------------------------------------

def test_tiny_autoencoder_preset_measures_and_saves_its_scale(tmp_path):
    path = train_command("tiny_autoencoder", out=tmp_path / "run", progress=False)
    assert path == tmp_path / "run" / "tiny_autoencoder.safetensors" and path.exists()
    info = json.loads((tmp_path / "run" / "tiny_autoencoder.json").read_text())
    assert info["kind"] == "autoencoder" and info["schedule"] is None and "latent" not in info
    recorded = info["made_by"]["latent_scale"]
    assert isinstance(recorded, float) and math.isfinite(recorded) and recorded > 0
    assert read_manifest(tmp_path / "run")["tiny_autoencoder"]["latent_scale"] == recorded
    pre = load_pretrained("tiny_autoencoder", root=tmp_path / "run")
    found = pre.model.latent_scale
    assert found.dtype == torch.float32 and math.isfinite(float(found))
    # the JSON holds the float64 1 / std, the buffer its float32 rounding
    assert torch.equal(found, torch.tensor(recorded, dtype=torch.float32))
    z = encode(pre.model, mnist_tensors("train", n=500)[0])
    assert float(z.std()) == pytest.approx(1.0, abs=0.1)  # measured on all 60 000 training digits


# ----- the shipped checkpoint ---------------------------------------------------------------------

def test_shipped_mnist_autoencoder_gives_unit_std_on_held_out_digits():
    """s was measured on the training digits; on the bundled test digits the latents' std is still about 1."""
    pre = load_pretrained("mnist_autoencoder")
    assert isinstance(pre.model, Autoencoder) and pre.model.config == AutoencoderConfig.mnist()
    x, _ = mnist_tensors("test")
    z = encode(pre.model, x)
    assert len(x) >= 1000 and z.shape == (len(x), 4, 8, 8)
    assert abs(float(z.std()) - 1.0) < 0.1, f"std of the test digits' latents is {float(z.std()):.3f}"


def test_shipped_mnist_autoencoder_records_its_scale():
    pre = load_pretrained("mnist_autoencoder")
    recorded = pre.info["made_by"]["latent_scale"]
    assert torch.equal(pre.model.latent_scale, torch.tensor(recorded, dtype=torch.float32))
    assert read_manifest()["mnist_autoencoder"]["latent_scale"] == recorded
