"""`--sampler ddpm|ddim|euler|heun|dpmpp2m|sde` on every kind of model (chapter 09): one registry, the number of
network evaluations printed, clear errors where a sampler does not fit, and DDPM/DDIM exactly as before.

Untrained tiny checkpoints in a temporary folder: these tests check wiring and errors, not image quality.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from exact_gaussian import CountCalls

from diffusion_lab.cli.main import main
from diffusion_lab.data.shapes import caption_vocabulary
from diffusion_lab.latent import measure_latent_scale
from diffusion_lab.models.autoencoder import Autoencoder, AutoencoderConfig
from diffusion_lab.models.mlp import MLPConfig, MLPDenoiser
from diffusion_lab.models.noisy_classifier import NoisyClassifier, NoisyClassifierConfig
from diffusion_lab.models.text import TextEncoderConfig
from diffusion_lab.models.text_unet import TextUNet, TextUNetConfig
from diffusion_lab.models.unet import UNet, UNetConfig
from diffusion_lab.notation import sigma_to_t
from diffusion_lab.pipelines import generate, load_pipeline
from diffusion_lab.pipelines.samplers import SAMPLERS, get_sampler, plan_sampler
from diffusion_lab.pretrained import read_manifest, save_pretrained
from diffusion_lab.sampling import DDIMScheduler, DDPMScheduler, sample
from diffusion_lab.schedules import NoiseSchedule

NEW = ["euler", "heun", "dpmpp2m", "sde", "dpmpp2m_sde"]


@pytest.fixture(autouse=True)
def cpu_only(monkeypatch):
    monkeypatch.setenv("DIFFUSION_LAB_DEVICE", "cpu")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """uncond, cond (classes), text (prompts), points (2-D MLP), latent (+ its autoencoder ae), and the guiding
    classifier under the name the CLI looks for."""
    folder = tmp_path_factory.mktemp("checkpoints")
    schedule = NoiseSchedule.from_name("cosine", 1000)
    torch.manual_seed(0)
    tiny = UNetConfig.tiny()
    text = TextUNetConfig(dataclasses.replace(tiny, in_channels=3, out_channels=3, image_size=16,
                                              cross_attention_resolutions=(4,), context_dim=16),
                          TextEncoderConfig(caption_vocabulary(), width=16, depth=1, num_heads=2))
    uncond = UNet(tiny)
    with torch.no_grad():  # conv_out starts at zero: make the samples depend on the model
        uncond.conv_out.weight.normal_(0, 0.1)
    ae = Autoencoder(AutoencoderConfig.tiny()).eval()
    scale = measure_latent_scale(ae, torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    save_pretrained("ae", ae, ae.config, kind="autoencoder", schedule=None, made_by={"latent_scale": scale},
                    root=folder)
    latent_config = UNetConfig(in_channels=4, out_channels=4, image_size=8, base_channels=16, channel_mults=(1, 2, 2),
                               num_groups=4, num_heads=2)
    digest = read_manifest(folder)["ae"]["sha256"]["ae.safetensors"]
    latent_extra = {"latent": {"autoencoder": "ae", "latent_scale": float(ae.latent_scale),
                               "autoencoder_sha256": digest}}
    for name, model, kind, extra in [
        ("uncond", uncond, "unet", {}),
        ("cond", UNet(dataclasses.replace(tiny, num_classes=10)), "unet", {}),
        ("text", TextUNet(text), "text_unet", {}),
        ("points", MLPDenoiser(MLPConfig(hidden_dim=16, num_layers=1)), "mlp", {}),
        ("latent", UNet(latent_config), "latent_unet", latent_extra),
        ("mnist_noisy_classifier", NoisyClassifier(NoisyClassifierConfig(base_channels=8, channel_mults=(1, 2),
                                                                        num_groups=4)), "noisy_classifier", {}),
    ]:
        save_pretrained(name, model, model.config, kind=kind, schedule=schedule, made_by={}, root=folder, extra=extra)
    return folder


@pytest.mark.parametrize("sampler", NEW)
@pytest.mark.parametrize("name, conditions, shape", [
    ("uncond", {}, (2, 1, 28, 28)),
    ("cond", {"class_label": 3, "guidance_scale": 3.0}, (2, 1, 28, 28)),
    ("text", {"prompt": "a red circle", "guidance_scale": 2.0}, (2, 3, 16, 16)),
    ("latent", {}, (2, 1, 28, 28)),
    ("points", {}, (2, 2)),
])
def test_every_sampler_on_every_kind_of_model(root, sampler, name, conditions, shape) -> None:
    x = generate(name, 2, sampler=sampler, steps=3, checkpoints_root=root, **conditions)
    assert x.shape == shape and bool(torch.isfinite(x).all())
    again = generate(name, 2, sampler=sampler, steps=3, checkpoints_root=root, **conditions)
    assert torch.equal(x, again)  # same seed, same samples


def test_the_sde_sampler_draws_from_the_seed(root) -> None:
    a = generate("uncond", 2, sampler="sde", steps=4, seed=1, checkpoints_root=root)
    assert not torch.equal(a, generate("uncond", 2, sampler="sde", steps=4, seed=2, checkpoints_root=root))


@pytest.mark.parametrize("sampler", list(SAMPLERS))
@pytest.mark.parametrize("steps", [1, 5])
def test_the_registrys_count_is_the_networks_calls(sampler, steps) -> None:
    schedule = NoiseSchedule.from_name("cosine", 1000)
    counted = CountCalls(lambda x, t: 0.5 * x)
    run = plan_sampler(sampler, schedule, steps, clip_range=1.0)
    x0 = run(counted, torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0)),
             generator=torch.Generator().manual_seed(1))
    assert x0.shape == (2, 1, 4, 4)
    assert counted.calls == get_sampler(sampler).nfe(steps)


@pytest.mark.parametrize("sampler, scheduler", [("ddpm", DDPMScheduler), ("ddim", DDIMScheduler)])
def test_ddpm_and_ddim_are_unchanged(root, sampler, scheduler) -> None:
    """The registry runs chapter 05's loop as before: the same seed gives the same bits as `sample` itself."""
    pipeline = load_pipeline("uncond", root=root)
    got = pipeline(3, sampler=sampler, steps=4, seed=7)
    chosen = scheduler(pipeline.schedule)
    chosen.set_timesteps(4)
    want = sample(pipeline.model, chosen, (3, 1, 28, 28), generator=torch.Generator().manual_seed(7))
    assert torch.equal(got, want)


def test_the_cli_prints_the_network_evaluations(root, tmp_path, capsys) -> None:
    out = tmp_path / "x.npz"
    assert main(["sample", "uncond", "--num", "2", "--sampler", "heun", "--steps", "4", "--out", str(out),
                 "--checkpoint-dir", str(root)]) == 0
    printed = capsys.readouterr().out
    assert "heun, 4 steps: 7 network evaluations per sample" in printed and f"wrote 2 samples to {out}" in printed
    with np.load(out) as f:
        assert f["images"].shape == (2, 28, 28, 1) and f["images"].dtype == np.uint8
    assert main(["sample", "uncond", "--num", "2", "--sampler", "ddim", "--steps", "4", "--out", str(out),
                 "--checkpoint-dir", str(root)]) == 0
    assert "ddim, 4 steps: 4 network evaluations per sample" in capsys.readouterr().out


def one_line_error(fn, *args, **kwargs) -> str:
    with pytest.raises(ValueError) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_classifier_guidance_needs_whole_steps(root, tmp_path, capsys) -> None:
    guided = {"class_label": 7, "classifier": "mnist_noisy_classifier", "classifier_scale": 2.0}
    message = one_line_error(generate, "uncond", 2, sampler="heun", steps=3, checkpoints_root=root, **guided)
    assert "classifier guidance reads sqrt(1 - alpha_bar_t) at whole steps t" in message
    assert "use sampler='ddpm' or 'ddim'" in message
    assert generate("uncond", 2, sampler="ddim", steps=3, checkpoints_root=root, **guided).shape == (2, 1, 28, 28)
    out = tmp_path / "x.npz"
    assert main(["sample", "uncond", "--num", "2", "--sampler", "euler", "--steps", "3", "--class", "7",
                 "--classifier-scale", "2", "--out", str(out), "--checkpoint-dir", str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: classifier guidance reads") and not out.exists()


@pytest.mark.parametrize("kwargs, message", [
    ({"sampler": "euler", "eta": 0.5}, "eta=0.5 is DDIM's setting: Euler solves the probability-flow ODE and adds no "
                                       "noise. Drop eta (--eta) or use sampler='ddim' (--sampler ddim)"),
    ({"sampler": "sde", "eta": 1.0}, "eta=1.0 is DDIM's setting: the reverse SDE adds the noise its equation says"),
    ({"sampler": "ddpm", "eta": 0.5}, "eta=0.5 is DDIM's setting: DDPM always adds its full noise. Drop eta"),
    ({"sampler": "heun", "steps": 0}, "steps must be a positive int, got 0"),
    ({"sampler": "ddim", "steps": 0}, "num_inference_steps must be between 1 and T"),
    ({"sampler": "lms"}, "unknown sampler 'lms'; choose one of ddpm, ddim, euler, heun, dpmpp2m, sde"),
])
def test_bad_sampler_settings_are_one_line(root, kwargs, message) -> None:
    assert message in one_line_error(generate, "uncond", 2, checkpoints_root=root, **{"steps": 3, **kwargs})


def test_nan_stops_with_the_fractional_step(tmp_path) -> None:
    torch.manual_seed(0)
    model = UNet(UNetConfig.tiny())
    with torch.no_grad():
        model.conv_out.bias.fill_(float("nan"))
    save_pretrained("broken", model, model.config, kind="unet", schedule=NoiseSchedule.from_name("cosine", 1000),
                    made_by={}, root=tmp_path)
    message = one_line_error(generate, "broken", 2, sampler="dpmpp2m", steps=4, checkpoints_root=tmp_path)
    t = float(sigma_to_t(NoiseSchedule.from_name("cosine", 1000), 80.0))  # the first step: sigma = 80
    assert f"the samples became NaN or infinite at step 0 of 4 (t={t:.5g})" in message


def test_argparse_offers_the_registrys_samplers(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["sample", "x", "--num", "1", "--sampler", "lms", "--out", "x.npz"])
    err = capsys.readouterr().err
    assert "invalid choice: 'lms'" in err and "'dpmpp2m'" in err
