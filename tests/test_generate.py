"""Tests for generate() and the sample CLI's conditioning and guidance flags (chapters 06-07).

Untrained tiny checkpoints are written to a temporary folder: these tests check wiring and errors,
not image quality (bench/guidance_quality.py measures that on the shipped models).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from diffusion_lab.cli.main import main
from diffusion_lab.data.shapes import caption_vocabulary
from diffusion_lab.models.noisy_classifier import NoisyClassifier, NoisyClassifierConfig
from diffusion_lab.models.text import TextEncoderConfig
from diffusion_lab.models.text_unet import TextUNet, TextUNetConfig
from diffusion_lab.models.unet import UNet, UNetConfig
from diffusion_lab.pipelines import generate
from diffusion_lab.pretrained import save_pretrained
from diffusion_lab.schedules import NoiseSchedule


@pytest.fixture(autouse=True)
def cpu_only(monkeypatch):
    monkeypatch.setenv("DIFFUSION_LAB_DEVICE", "cpu")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("checkpoints")
    schedule = NoiseSchedule.from_name("cosine", 1000)
    torch.manual_seed(0)
    tiny = UNetConfig.tiny()
    text = TextUNetConfig(dataclasses.replace(tiny, in_channels=3, out_channels=3, image_size=16,
                                              cross_attention_resolutions=(4,), context_dim=16),
                          TextEncoderConfig(caption_vocabulary(), width=16, depth=1, num_heads=2))
    judge = NoisyClassifierConfig(base_channels=8, channel_mults=(1, 2), num_groups=4)
    for name, model, kind, sched in [
        ("uncond", UNet(tiny), "unet", schedule),
        ("cond", UNet(dataclasses.replace(tiny, num_classes=10)), "unet", schedule),
        ("text", TextUNet(text), "text_unet", schedule),
        ("judge", NoisyClassifier(judge), "noisy_classifier", schedule),
    ]:
        save_pretrained(name, model, model.config, kind=kind, schedule=sched, made_by={}, root=folder)
    return folder


def run(root: Path, name: str, **kwargs) -> torch.Tensor:
    return generate(name, 2, steps=3, checkpoints_root=root, **kwargs)


def test_every_kind_of_conditioning_samples(root):
    assert run(root, "uncond").shape == (2, 1, 28, 28)
    assert run(root, "cond", class_label=3, guidance_scale=3.0).shape == (2, 1, 28, 28)
    assert run(root, "cond").shape == (2, 1, 28, 28)  # no class: the null class
    assert run(root, "uncond", class_label=7, classifier="judge", classifier_scale=2.0).shape == (2, 1, 28, 28)
    x = run(root, "text", prompt="a red circle", negative_prompt="a blue square", guidance_scale=3.0)
    assert x.shape == (2, 3, 16, 16) and x.abs().max() <= 1.0
    assert run(root, "text", prompt=["a red circle", "a green cross"]).shape == (2, 3, 16, 16)


def test_same_seed_same_images_and_guidance_changes_them(root):
    a = run(root, "text", prompt="a red circle", guidance_scale=2.0, seed=1)
    torch.testing.assert_close(a, run(root, "text", prompt="a red circle", guidance_scale=2.0, seed=1))
    assert not torch.equal(a, run(root, "text", prompt="a red circle", guidance_scale=2.0, seed=2))


@pytest.mark.parametrize("name, kwargs, error, message", [
    ("uncond", {"prompt": "a red circle"}, ValueError, "does not read text"),
    ("text", {}, ValueError, "draws what a prompt describes: give one"),
    ("text", {"prompt": ""}, ValueError, "has no words"),
    ("text", {"prompt": "a red dragon"}, ValueError, "unknown word 'dragon'"),
    ("text", {"prompt": 5}, TypeError, "must be a str or a list of str"),
    ("text", {"prompt": ["a red circle"] * 3}, ValueError, "one prompt for all 2 samples or one per sample"),
    ("text", {"prompt": "a red circle", "negative_prompt": "a blue square"}, ValueError,
     "a negative prompt only acts through guidance"),
    ("text", {"prompt": "a red circle", "guidance_scale": -1.0}, ValueError, "guidance_scale must be >= 0"),
    ("text", {"guidance_scale": 3.0}, ValueError, "needs a prompt"),
    ("text", {"class_label": 3, "prompt": "a red circle"}, ValueError, "does not take a class"),
    ("cond", {"class_label": 12}, ValueError, "class_label must be a digit 0..9"),
    ("cond", {"guidance_scale": 3.0}, ValueError, "needs a class-conditional model and a class"),
    ("cond", {"class_label": 3, "classifier_scale": 2.0}, ValueError, "steers the unconditional MNIST model"),
    ("uncond", {"class_label": 3}, ValueError, "is unconditional: to get a chosen digit"),
    ("uncond", {"guidance_scale": 2.0}, ValueError, "For the unconditional model use classifier_scale"),
    ("uncond", {"classifier_scale": 2.0}, ValueError, "needs the class to steer towards"),
    ("uncond", {"class_label": 3, "classifier_scale": -1.0}, ValueError, "classifier_scale must be >= 0"),
    ("judge", {}, ValueError, "judge is a noisy_classifier, not a diffusion model"),
])
def test_bad_requests_are_clear_errors(root, name, kwargs, error, message):
    with pytest.raises(error, match=message):
        run(root, name, **kwargs)


def test_cli_prompt_flags(root, tmp_path, capsys):
    out = tmp_path / "shapes.npz"
    code = main(["sample", "text", "--num", "2", "--steps", "2", "--prompt", "a small red circle in the top left",
                 "--negative-prompt", "a blue square", "--guidance-scale", "3", "--out", str(out),
                 "--checkpoint-dir", str(root)])
    assert code == 0
    with np.load(out) as f:
        assert f["images"].shape == (2, 16, 16, 3) and f["images"].dtype == np.uint8
        assert list(f["prompts"]) == ["a small red circle in the top left"] * 2


@pytest.mark.parametrize("args, message", [
    (["--prompt", "a gren circle"], "error: unknown word 'gren' in the prompt 'a gren circle'. Did you mean 'green'?"),
    (["--prompt", "a red circle", "--guidance-scale", "-2"], "error: guidance_scale must be >= 0"),
])
def test_cli_bad_prompt_is_one_error_line(root, tmp_path, capsys, args, message):
    code = main(["sample", "text", "--num", "2", "--out", str(tmp_path / "x.npz"), "--checkpoint-dir", str(root),
                 *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(message)
    assert not list(tmp_path.iterdir())
