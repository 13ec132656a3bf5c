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
    (["--prompt", "a red " + "x" * 10_000], "error: unknown word 'xxxxxxxxxx"),  # issue 21: cut, not echoed whole
])
def test_cli_bad_prompt_is_one_error_line(root, tmp_path, capsys, args, message):
    code = main(["sample", "text", "--num", "2", "--out", str(tmp_path / "x.npz"), "--checkpoint-dir", str(root),
                 *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(message) and len(err[0]) < 600
    assert not list(tmp_path.iterdir())


# --- issue 21: bad requests and broken models are one clear line; many samples go in batches --------------


def one_line_error(error_type, fn, *args, **kwargs) -> str:
    with pytest.raises(error_type) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize("kwargs, message", [
    ({"sampler": "ddpm", "eta": 0.5}, "eta=0.5 is DDIM's setting: DDPM always adds its full noise. Drop eta"),
    ({"seed": 2**70}, "seed must be a whole number from 0 to 2**63 - 1, got 1180591620717411303424"),
    ({"seed": -1}, "seed must be a whole number from 0 to 2**63 - 1, got -1"),
    ({"batch_size": 0}, "batch_size must be a positive int, got 0"),
])
def test_bad_sampling_settings_are_one_line(root, kwargs, message):
    assert message in one_line_error(ValueError, run, root, "uncond", **kwargs)


def test_ddpm_with_eta_zero_is_still_fine(root):
    assert run(root, "uncond", sampler="ddpm", eta=0.0).shape == (2, 1, 28, 28)


def test_long_prompt_is_cut_in_the_message(root):
    message = one_line_error(ValueError, run, root, "text", prompt="a red " + "x" * 10_000)
    assert "... (10002 characters)" in message and len(message) < 600
    message = one_line_error(ValueError, run, root, "text", prompt=" ".join(["red"] * 5000))
    assert "has 5000 words but this model reads at most" in message and len(message) < 400


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_device_is_a_clear_error(root):
    message = one_line_error(ValueError, run, root, "uncond", device="cuda")
    assert "sees no CUDA GPU; use 'cpu'" in message


def test_model_returning_nan_stops_with_the_step(root, tmp_path):
    torch.manual_seed(0)
    model = UNet(UNetConfig.tiny())
    with torch.no_grad():
        model.conv_out.bias.fill_(float("nan"))
    save_pretrained("broken", model, model.config, kind="unet", schedule=NoiseSchedule.from_name("cosine", 1000),
                    made_by={}, root=tmp_path)
    message = one_line_error(ValueError, generate, "broken", 2, steps=4, checkpoints_root=tmp_path)
    assert "the samples became NaN or infinite at step 0 of 4 (t=750)" in message
    assert "remake or restore the checkpoint" in message
    out = tmp_path / "x.npz"
    assert main(["sample", "broken", "--num", "2", "--steps", "4", "--out", str(out),
                 "--checkpoint-dir", str(tmp_path)]) == 2
    assert not out.exists()


def test_batches_keep_same_seed_same_samples(root):
    a = run(root, "uncond", seed=3, batch_size=2, sampler="ddpm")  # num 2: one batch
    five = generate("uncond", 5, steps=3, seed=3, batch_size=2, sampler="ddpm", checkpoints_root=root)
    assert five.shape == (5, 1, 28, 28) and torch.isfinite(five).all()
    torch.testing.assert_close(five, generate("uncond", 5, steps=3, seed=3, batch_size=2, sampler="ddpm",
                                              checkpoints_root=root), rtol=0, atol=0)
    assert torch.equal(five[:2], a)  # the first batch is what one batch of that size gives
    assert torch.equal(run(root, "uncond", seed=3, sampler="ddpm"), a)  # num <= batch_size: as before batching
    assert not torch.equal(five[2:4], five[:2])  # later batches continue the generator, not restart it


def test_one_prompt_per_sample_is_split_across_batches(root):
    prompts = ["a red circle", "a green cross", "a blue square"]
    x = generate("text", 3, steps=2, prompt=prompts, guidance_scale=2.0, batch_size=2, checkpoints_root=root)
    assert x.shape == (3, 3, 16, 16)
    first = generate("text", 2, steps=2, prompt=prompts[:2], guidance_scale=2.0, batch_size=2,
                     checkpoints_root=root)
    assert torch.equal(x[:2], first)


def test_a_request_that_cannot_fit_says_so_up_front(root, monkeypatch):
    from diffusion_lab.pipelines import batching

    calls = []
    monkeypatch.setattr(batching, "available_memory", lambda device: 10 * 2**20)  # 10 MiB
    monkeypatch.setattr(UNet, "forward", lambda *a, **k: calls.append(1))
    message = one_line_error(ValueError, generate, "uncond", 10_000, steps=3, checkpoints_root=root)
    assert "10,000 samples of shape (1, 28, 28) need about 90 MiB of memory (30 MiB for the samples alone)" in message
    assert "has 10 MiB free: ask for at most about 1,114 at a time" in message
    assert not calls  # said before any work
