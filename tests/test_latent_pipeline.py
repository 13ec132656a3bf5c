"""Tests for LatentImagePipeline (chapter 08): a latent checkpoint names its autoencoder and the scale s its
latents had; loading finds that autoencoder and refuses one whose s changed; sampling draws latents and
decodes them once. Untrained tiny checkpoints in a temporary folder: wiring and errors, not image quality.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from diffusion_lab.cli.commands import sample_command
from diffusion_lab.latent import decode, measure_latent_scale
from diffusion_lab.models.autoencoder import Autoencoder, AutoencoderConfig
from diffusion_lab.models.unet import UNet, UNetConfig
from diffusion_lab.pipelines import generate, load_pipeline
from diffusion_lab.pipelines.latent import LatentImagePipeline
from diffusion_lab.pipelines.registry import PIPELINES
from diffusion_lab.pretrained import CheckpointError, load_pretrained, read_manifest, save_pretrained
from diffusion_lab.schedules import NoiseSchedule

LATENT_UNET = UNetConfig(in_channels=4, out_channels=4, image_size=8, base_channels=16, channel_mults=(1, 2, 2),
                         num_groups=4, num_heads=2)


@pytest.fixture(autouse=True)
def cpu_only(monkeypatch):
    monkeypatch.setenv("DIFFUSION_LAB_DEVICE", "cpu")


def _latent_entry(root: Path, autoencoder: str, scale: float) -> dict:
    digest = read_manifest(root)[autoencoder]["sha256"][f"{autoencoder}.safetensors"]
    return {"latent": {"autoencoder": autoencoder, "latent_scale": scale, "autoencoder_sha256": digest}}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """ae (a tiny autoencoder with a measured scale), latent (a tiny latent U-Net over its latents), stale (the
    same, recording another scale), no_latent (no "latent" entry) and orphan (naming a missing autoencoder)."""
    folder = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    ae = Autoencoder(AutoencoderConfig.tiny()).eval()
    scale = measure_latent_scale(ae, torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    save_pretrained("ae", ae, ae.config, kind="autoencoder", schedule=None, made_by={"latent_scale": scale},
                    root=folder)
    unet = UNet(LATENT_UNET)
    with torch.no_grad():  # conv_out starts at zero: make the prediction depend on the weights
        unet.conv_out.weight.normal_(0, 0.05)
    schedule = NoiseSchedule.from_name("cosine", 1000)
    scale = float(ae.latent_scale)
    for name, extra in [("latent", _latent_entry(folder, "ae", scale)),
                        ("stale", _latent_entry(folder, "ae", scale * 1.5)),
                        ("no_latent", {}),
                        ("orphan", {"latent": {"autoencoder": "gone", "latent_scale": scale}})]:
        save_pretrained(name, unet, LATENT_UNET, kind="latent_unet", schedule=schedule, made_by={}, root=folder,
                        extra=extra)
    return folder


def test_latent_unet_kind_has_the_latent_pipeline(root):
    assert PIPELINES["latent_unet"] is LatentImagePipeline
    pipeline = load_pipeline("latent", root=root)
    assert isinstance(pipeline, LatentImagePipeline)
    assert isinstance(pipeline.autoencoder, Autoencoder) and not pipeline.autoencoder.training
    assert torch.equal(pipeline.autoencoder.latent_scale, load_pretrained("ae", root=root).model.latent_scale)
    assert pipeline.sample_shape() == (4, 8, 8)
    info = json.loads((root / "latent.json").read_text())
    assert info["latent"]["autoencoder"] == "ae" and info["kind"] == "latent_unet"


def test_pipeline_samples_decoded_pictures_reproducibly(root):
    pipeline = load_pipeline("latent", root=root)
    x = pipeline(3, steps=5, seed=0)
    assert x.shape == (3, 1, 28, 28) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1 and x.std() > 0
    torch.testing.assert_close(x, pipeline(3, steps=5, seed=0), rtol=0, atol=0)
    assert not torch.equal(x, pipeline(3, steps=5, seed=1))


def test_pictures_are_the_latents_decoded_once(root):
    pipeline = load_pipeline("latent", root=root)
    z = pipeline.sample_latents(3, steps=5, seed=0)
    assert z.shape == (3, 4, 8, 8)
    torch.testing.assert_close(pipeline(3, steps=5, seed=0), decode(pipeline.autoencoder, z), rtol=0, atol=0)


def test_latents_are_not_clipped(root):
    """Latents are unbounded: a sampler clipping its guess of z_0 to [-1, 1] would end inside [-1, 1]."""
    pipeline = load_pipeline("latent", root=root)
    assert pipeline.make_scheduler("ddim", 5).clip_sample is False
    assert pipeline.make_scheduler("ddpm", 5).clip_sample is False
    assert pipeline.sample_latents(4, steps=5, seed=0).abs().max() > 1


def test_generate_and_ddpm(root):
    x = generate("latent", 3, steps=5, checkpoints_root=root)
    assert x.shape == (3, 1, 28, 28)
    torch.testing.assert_close(x, load_pipeline("latent", root=root)(3, steps=5, seed=0), rtol=0, atol=0)
    assert generate("latent", 2, sampler="ddpm", steps=5, checkpoints_root=root).shape == (2, 1, 28, 28)


def test_a_retrained_autoencoder_is_refused(root):
    with pytest.raises(CheckpointError, match="retrained"):
        load_pipeline("stale", root=root)
    with pytest.raises(CheckpointError, match="retrained"):
        generate("stale", 2, steps=3, checkpoints_root=root)


def test_a_latent_checkpoint_must_name_its_autoencoder(root):
    with pytest.raises(CheckpointError, match="does not say which autoencoder decodes its latents"):
        load_pipeline("no_latent", root=root)


def test_a_missing_autoencoder_is_a_checkpoint_error(root):
    with pytest.raises(CheckpointError, match="no checkpoint called 'gone'"):
        load_pipeline("orphan", root=root)


def test_sample_command_writes_uint8_pictures(root, tmp_path):
    out = sample_command("latent", num=2, steps=3, out=tmp_path / "x.npz", checkpoints_root=root)
    assert out == tmp_path / "x.npz"
    with np.load(out) as f:
        assert f["images"].dtype == np.uint8 and f["images"].shape == (2, 28, 28, 1)
        assert f["labels"].tolist() == [-1, -1]


@pytest.mark.parametrize("condition, message", [
    ({"class_label": 3}, "does not take a class"),
    ({"prompt": "a red circle"}, "does not read text"),
    ({"guidance_scale": 3.0}, "guidance_scale"),
    ({"classifier_scale": 2.0}, "classifier guidance"),
])
def test_conditions_are_refused(root, tmp_path, condition, message):
    with pytest.raises(ValueError, match=message):
        load_pipeline("latent", root=root)(2, steps=3, **condition)
    with pytest.raises(ValueError, match=message):
        sample_command("latent", num=2, steps=3, out=tmp_path / "x.npz", checkpoints_root=root, **condition)
    assert not (tmp_path / "x.npz").exists()
