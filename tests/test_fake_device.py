"""Device bugs found without a GPU (issue 18): every training preset, every generate() path and the
chapters' model code run under ``FakeDevice`` (tests/fake_device.py), which fails on what CUDA or MPS
would refuse and counts the host-device synchronisations that make a GPU wait."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fake_device import DeviceBug, FakeDevice

from diffusion_lab.cli.commands import build_model
from diffusion_lab.cli.presets import build_objective, get_preset, preset_names
from diffusion_lab.data.shapes import caption_vocabulary, make_shapes
from diffusion_lab.judges.metrics import class_probabilities, diversity, features, fid
from diffusion_lab.judges.mnist_classifier import MNISTClassifier
from diffusion_lab.judges.noisy_accuracy import accuracy_by_timestep
from diffusion_lab.latent import decode, encode, measure_latent_scale
from diffusion_lab.models.attention import record_cross_attention
from diffusion_lab.models.autoencoder import Autoencoder, AutoencoderConfig
from diffusion_lab.models.noisy_classifier import NoisyClassifier, NoisyClassifierConfig
from diffusion_lab.models.text import TextEncoderConfig
from diffusion_lab.models.text_unet import TextUNet, TextUNetConfig
from diffusion_lab.models.unet import UNet, UNetConfig
from diffusion_lab.notebook.attention_maps import token_maps
from diffusion_lab.pipelines import generate
from diffusion_lab.pretrained import save_pretrained
from diffusion_lab.sampling import DDIMScheduler, sdedit
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.training import fit, loss_by_timestep

CUDA = torch.device("cuda")
# torch.autocast("cuda") warns that this CPU build has no CUDA and runs the pass in float32: expected here
pytestmark = pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning")


@pytest.fixture(autouse=True)
def ampere(monkeypatch):
    """What precision.py asks a CUDA device: an Ampere GPU (bf16)."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))


# ----- the guard itself: it must catch each kind of bug ---------------------------------------------------

def test_it_catches_mixed_devices_numpy_cpu_generators_and_mps_float64():
    lin = torch.nn.Linear(3, 2)
    with FakeDevice() as fd:
        lin.to(CUDA)
        x = torch.randn(4, 3).to(CUDA)
        assert x.device == CUDA and lin.weight.device == CUDA and lin(x).device == CUDA
        with pytest.raises(DeviceBug, match="mixes tensors on cuda"):
            lin(torch.randn(4, 3))
        with pytest.raises(DeviceBug, match=r"\.numpy\(\)"):
            lin(x).detach().numpy()
        with pytest.raises(DeviceBug, match="CPU generator"):
            torch.randn(3, generator=torch.Generator().manual_seed(0), device=CUDA)
        assert fd.on_device(torch.zeros(2, device=x.device))  # follows x.device, as real code does
        before = fd.syncs
        lin(x).sum().item()
        assert fd.syncs == before + 1 and not fd.on_device(x.cpu())
    with FakeDevice("mps"), pytest.raises(DeviceBug, match="float64"):
        torch.ones(2, device="mps").double()


# ----- every preset trains on the device, with at most one read per log ------------------------------------

@pytest.mark.parametrize("name", preset_names())
def test_every_preset_trains_on_the_device(name):
    preset = get_preset(name)
    from diffusion_lab.pretrained import read_manifest

    untrained = [c for c in (preset.autoencoder, preset.clip, preset.text_encoder)
                 if c is not None and c not in read_manifest()]
    if untrained:  # e.g. chapter 11's tiny_sd before scenes64_autoencoder is published
        pytest.skip(f"{name} learns from {untrained}, not in data/checkpoints yet")
    config = dataclasses.replace(preset.train, steps=4, batch_size=4, log_every=2, checkpoint_every=100,
                                 warmup_steps=1)
    if preset.data == "mnist_full":  # all 60,000 digits are a download: the bundled ones have the same form
        preset = dataclasses.replace(preset, data="mnist")
    torch.manual_seed(0)
    model = build_model(preset)
    objective = build_objective(preset, model)
    with FakeDevice() as fd:
        state = fit(model, objective, config, device=CUDA, progress=False)
        assert next(state.ema.model.parameters()).device == CUDA
    assert state.step == 4 and len(state.history.losses) == 2
    assert fd.syncs <= 2, f"{fd.syncs} host-device syncs in 4 steps with log_every=2: {fd.sync_sites}"
    expected = "bf16" if preset.train.mixed_precision else "fp32"
    assert state.precision == expected


# ----- every generate() path samples on the device ----------------------------------------------------------

@pytest.fixture(scope="module")
def root(tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpoints")
    schedule = NoiseSchedule.from_name("cosine", 1000)
    torch.manual_seed(0)
    tiny = UNetConfig.tiny()
    text = TextUNetConfig(dataclasses.replace(tiny, in_channels=3, out_channels=3, image_size=16,
                                              cross_attention_resolutions=(4,), context_dim=16),
                          TextEncoderConfig(caption_vocabulary(), width=16, depth=1, num_heads=2))
    judge = NoisyClassifierConfig(base_channels=8, channel_mults=(1, 2), num_groups=4)
    from diffusion_lab.models.mlp import MLPConfig, MLPDenoiser
    for name, model, kind in [("uncond", UNet(tiny), "unet"), ("cond", UNet(dataclasses.replace(tiny, num_classes=10)), "unet"),
                              ("text", TextUNet(text), "text_unet"), ("judge", NoisyClassifier(judge), "noisy_classifier"),
                              ("points", MLPDenoiser(MLPConfig(hidden_dim=16, num_layers=1)), "mlp")]:
        save_pretrained(name, model, model.config, kind=kind, schedule=schedule, made_by={}, root=folder)
    autoencoder = Autoencoder(AutoencoderConfig.tiny())
    scale = measure_latent_scale(autoencoder, torch.rand(16, 1, 28, 28) * 2 - 1)
    save_pretrained("ae", autoencoder, autoencoder.config, kind="autoencoder", schedule=None, made_by={}, root=folder)
    latent = UNet(dataclasses.replace(tiny, in_channels=4, out_channels=4, image_size=8))
    save_pretrained("latent", latent, latent.config, kind="latent_unet", schedule=schedule, made_by={}, root=folder,
                    extra={"latent": {"autoencoder": "ae", "latent_scale": scale}})
    return folder


@pytest.mark.parametrize("name, kwargs", [
    ("uncond", {}), ("uncond", {"sampler": "ddpm"}), ("uncond", {"eta": 0.5}), ("points", {}),
    ("cond", {"class_label": 3, "guidance_scale": 3.0}), ("cond", {}),
    ("uncond", {"class_label": 7, "classifier": "judge", "classifier_scale": 2.0}),
    ("text", {"prompt": "a red circle", "negative_prompt": "a blue square", "guidance_scale": 3.0}),
    ("text", {"prompt": ["a red circle", "a green cross"]}), ("latent", {}),
])
def test_every_generate_path_samples_on_the_device(root, name, kwargs, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # so asking for "cuda" is allowed
    monkeypatch.setattr("diffusion_lab.pipelines.batching.available_memory", lambda device: None)  # no real GPU
    steps = 4
    with FakeDevice() as fd:
        x = generate(name, 2, steps=steps, device=CUDA, checkpoints_root=root, **kwargs)
        assert x.device == CUDA
    allowed = 2 if name == "latent" else 1  # the decoder reads its scale s once, to refuse an unmeasured one
    assert fd.syncs <= allowed, f"{fd.syncs} host-device syncs while sampling {steps} steps: {fd.sync_sites}"


# ----- what the chapters do with models on the device ------------------------------------------------------

def test_chapter_model_code_runs_on_the_device():
    schedule = NoiseSchedule.from_name("cosine", 100)
    images = torch.rand(8, 1, 28, 28) * 2 - 1
    labels = torch.arange(8) % 2
    torch.manual_seed(0)
    with FakeDevice():
        unet = UNet(UNetConfig.tiny()).to(CUDA)
        x0 = images.to(CUDA)
        curve = loss_by_timestep(unet, schedule, x0, [0, 50, 99], generator=torch.Generator().manual_seed(1))
        assert curve.shape == (3,)
        assert schedule.to(CUDA).snr(torch.tensor([0, 99])).device == CUDA
        judge = NoisyClassifier(NoisyClassifierConfig(base_channels=8, channel_mults=(1, 2), num_groups=4,
                                                      num_classes=2)).to(CUDA)
        acc = accuracy_by_timestep(judge, images, labels, schedule, timesteps=(0, 50))
        assert set(acc) == {0, 50}
        clean = MNISTClassifier().to(CUDA)
        assert class_probabilities(clean, images).shape == (8, 10)
        assert fid(clean, images, images.flip(0)) >= -1e-6 and features(clean, images).dtype == torch.float64
        assert diversity(x0) > 0
        autoencoder = Autoencoder(AutoencoderConfig.tiny()).to(CUDA)  # chapter 08: scale, encode, decode, SDEdit
        measure_latent_scale(autoencoder, images)
        z = encode(autoencoder, images.to(CUDA))
        assert z.device == CUDA and decode(autoencoder, z).device == CUDA
        latent_unet = UNet(dataclasses.replace(UNetConfig.tiny(), in_channels=4, out_channels=4, image_size=8)).to(CUDA)
        scheduler = DDIMScheduler(schedule.to(CUDA), clip_sample=False)
        scheduler.set_timesteps(5)
        assert sdedit(latent_unet, scheduler, z, 0.6, generator=torch.Generator().manual_seed(0)).device == CUDA
        text = TextUNet(TextUNetConfig(dataclasses.replace(UNetConfig.tiny(), in_channels=3, out_channels=3,
                                                           image_size=16, cross_attention_resolutions=(4,),
                                                           context_dim=16),
                                       TextEncoderConfig(caption_vocabulary(), width=16, depth=1,
                                                         num_heads=2))).to(CUDA)
        shapes = make_shapes(2, size=16)
        with record_cross_attention(text) as maps, torch.no_grad():
            text(shapes.images.to(CUDA), torch.tensor([5, 50], device=CUDA), text.encode_prompts(shapes.captions))
        assert token_maps(maps, size=16).shape == (2, 12, 16, 16)
    with FakeDevice("mps"):  # no float64 on Apple's GPUs: these compute it on the CPU
        on_mps = schedule.to("mps")
        assert on_mps.snr(torch.tensor([0, 99])).dtype == torch.float32
        assert on_mps.log_snr(5).dtype == torch.float32
        assert diversity(images.to("mps")) > 0


# ----- whole chapters on the device -------------------------------------------------------------------------

DEVICE_CHAPTERS = sorted(p.name for p in (Path(__file__).resolve().parents[1] / "chapters").glob("[0-9][0-9]_*.py")
                         if "pick_device()" in p.read_text())


@pytest.mark.notebooks
@pytest.mark.parametrize("chapter", DEVICE_CHAPTERS)
def test_chapter_runs_on_the_device(chapter):
    """Every chapter that picks a device runs top to bottom, in quick mode, with everything it puts there checked
    (in a subprocess: the runner patches torch's device queries for the whole process)."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / "tests" / "run_chapter_on_fake_device.py"),
                           str(root / "chapters" / chapter)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{chapter} failed on the fake device:\n{done.stderr[-3000:]}"
    assert "ran on a fake cuda" in done.stdout
