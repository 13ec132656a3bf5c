"""The diffusion upsampler (chapter 10): the network (noisy image + enlarged low res, an augmentation level),
noise-conditioning augmentation, the crop objective, sampling with ``upsample``, checkpoints."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from fresh_weights import awake

from diffusion_lab.models.unet import UNetConfig
from diffusion_lab.models.upsampler import (
    Upsampler,
    UpsamplerConfig,
    augmentation_alpha_bar,
    downsample,
    enlarge,
    noise_augment,
)
from diffusion_lab.pipelines.super_resolution import upsample
from diffusion_lab.pretrained import load_pretrained, model_kinds, save_pretrained
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.training import SuperResolutionObjective, TrainConfig, fit

COSINE = NoiseSchedule.from_name("cosine", 1000)




def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def smooth_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Pictures in [-1, 1] with little fine detail (bilinear 4x4 noise), so the low res says most of it."""
    low = torch.rand(n, 3, 4, 4, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


@pytest.fixture(scope="module")
def model() -> Upsampler:
    torch.manual_seed(0)
    return awake(Upsampler(UpsamplerConfig.tiny())).eval()


# ----- the network ----------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [32, 64, 128])
def test_runs_at_any_size(model, size):
    with torch.no_grad():
        out = model(randn(2, 3, size, size), torch.tensor([5, 900]), randn(2, 3, size // 2, size // 2, seed=1), 0.1)
    assert out.shape == (2, 3, size, size) and torch.isfinite(out).all()


def test_the_network_reads_the_noisy_image_then_the_enlarged_low_res(model):
    xt, low_res, t = randn(2, 3, 16, 16), randn(2, 3, 8, 8, seed=1), torch.tensor([10, 500])
    seen = []
    handle = model.unet.conv_in.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        with torch.no_grad():
            out = model(xt, t, low_res, 0.0)
            swapped = model(enlarge(low_res), t, downsample(xt), 0.0)
    finally:
        handle.remove()
    assert seen[0].shape == (2, 6, 16, 16)
    assert torch.equal(seen[0][:, :3], xt) and torch.allclose(seen[0][:, 3:], enlarge(low_res))
    assert not torch.allclose(out, swapped, atol=1e-4)  # the order is part of what the weights mean
    with torch.no_grad():
        assert not torch.allclose(out, model(xt, t, randn(2, 3, 8, 8, seed=2), 0.0), atol=1e-4)  # low res matters


def test_enlarge_is_bilinear_and_downsample_averages():
    low = torch.tensor([[[[0.0, 1.0]]]])  # (1, 1, 1, 2)
    assert torch.allclose(enlarge(low), torch.tensor([[[[0.0, 0.25, 0.75, 1.0]] * 2]]))
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert torch.equal(downsample(x), torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))
    with pytest.raises(ValueError, match="even H and W"):
        downsample(torch.zeros(1, 3, 5, 4))


def test_the_augmentation_level_matters(model):
    xt, low_res, t = randn(3, 3, 16, 16), randn(3, 3, 8, 8, seed=1), torch.tensor([10, 500, 900])
    with torch.no_grad():
        clean, noisy = model(xt, t, low_res, 0.0), model(xt, t, low_res, 0.5)
        assert (clean - noisy).abs().max() > 1e-4
        per_sample = model(xt, t, low_res, torch.tensor([0.0, 0.5, 0.0]))
    assert torch.allclose(per_sample[0], clean[0], atol=1e-6) and torch.allclose(per_sample[1], noisy[1], atol=1e-6)
    assert torch.allclose(model(xt, t, low_res, 0), clean)  # an int level is a level


def test_noise_augment_is_the_forward_process():
    low_res, noise = randn(4, 3, 8, 8), randn(4, 3, 8, 8, seed=1)
    assert torch.equal(noise_augment(low_res, 0.0, noise), low_res)  # 0: no augmentation, exactly
    assert torch.allclose(noise_augment(low_res, 1.0, noise), noise, atol=1e-6)  # 1: pure noise
    level = torch.tensor([0.0, 0.2, 0.5, 0.9])
    abar = augmentation_alpha_bar(level)
    expected = abar.sqrt().float().view(4, 1, 1, 1) * low_res + (1 - abar).sqrt().float().view(4, 1, 1, 1) * noise
    assert torch.allclose(noise_augment(low_res, level, noise), expected, atol=1e-6)
    # the cosine schedule in continuous time: at s = t / T it matches the discrete schedule's alpha_bar_t
    assert torch.allclose(augmentation_alpha_bar(torch.tensor([0.25, 0.5])).float(), COSINE.alpha_bars[[249, 499]],
                          rtol=2e-3)
    assert (augmentation_alpha_bar(torch.linspace(0, 1, 11)).diff() < 0).all()
    with pytest.raises(ValueError, match="noise must have low_res's shape"):
        noise_augment(low_res, 0.1, noise[:2])


def test_bad_inputs_are_clear_errors(model):
    t = torch.tensor([1, 2])
    with pytest.raises(ValueError, match=r"H and W must be divisible by 4.*got 18x18"):
        model(randn(2, 3, 18, 18), t, randn(2, 3, 9, 9), 0.1)
    with pytest.raises(ValueError, match=r"xt must be the noisy high-res images \(B, 3, H, W\), got \(2, 6, 16, 16\)"):
        model(randn(2, 6, 16, 16), t, randn(2, 3, 8, 8), 0.1)  # the concatenation is the model's job
    with pytest.raises(ValueError, match=r"low_res must be \(2, 3, 8, 8\).*got \(2, 1, 8, 8\)"):
        model(randn(2, 3, 16, 16), t, randn(2, 1, 8, 8), 0.1)
    with pytest.raises(ValueError, match=r"low_res must be \(2, 3, 8, 8\).*got \(2, 3, 16, 16\)"):
        model(randn(2, 3, 16, 16), t, randn(2, 3, 16, 16), 0.1)
    with pytest.raises(ValueError, match=r"augmentation_level must lie in \[0, 1\].*-0.1"):
        model(randn(2, 3, 16, 16), t, randn(2, 3, 8, 8), -0.1)
    with pytest.raises(ValueError, match=r"augmentation_level must lie in \[0, 1\]"):
        model(randn(2, 3, 16, 16), t, randn(2, 3, 8, 8), torch.tensor([0.1, float("nan")]))
    with pytest.raises(ValueError, match=r"one number or \(2,\)"):
        model(randn(2, 3, 16, 16), t, randn(2, 3, 8, 8), torch.tensor([0.1, 0.2, 0.3]))
    with pytest.raises(TypeError, match="augmentation_level must be a number"):
        model(randn(2, 3, 16, 16), t, randn(2, 3, 8, 8), None)


def test_config_checks_and_json_round_trip():
    config = UpsamplerConfig.tiny()
    assert UpsamplerConfig(**json.loads(json.dumps(dataclasses.asdict(config)))) == config
    assert config.channels == 3 and UpsamplerConfig.scenes().unet.image_size == 32
    with pytest.raises(ValueError, match="set in_channels=6"):
        UpsamplerConfig(dataclasses.replace(config.unet, in_channels=3))
    for change in ({"mid_attention": True}, {"attention_resolutions": (4,)}):
        with pytest.raises(ValueError, match="fully convolutional"):
            UpsamplerConfig(dataclasses.replace(config.unet, **change))
    with pytest.raises(ValueError, match="num_classes=None"):
        UpsamplerConfig(dataclasses.replace(config.unet, num_classes=2))
    with pytest.raises(TypeError, match="UpsamplerConfig"):
        Upsampler(config.unet)
    assert model_kinds()["upsampler"] == (Upsampler, UpsamplerConfig)


def test_checkpoint_round_trip(tmp_path, model):
    save_pretrained("up", model, model.config, kind="upsampler", schedule=COSINE, made_by={}, root=tmp_path)
    pre = load_pretrained("up", root=tmp_path)
    assert isinstance(pre.model, Upsampler) and pre.model.config == model.config and pre.schedule.T == 1000
    xt, low_res, t = randn(2, 3, 16, 16), randn(2, 3, 8, 8, seed=1), torch.tensor([3, 700])
    with torch.no_grad():
        assert torch.equal(pre.model(xt, t, low_res, 0.2), model(xt, t, low_res, 0.2))


# ----- the objective --------------------------------------------------------------------------------

def numbered_images(n: int = 3, size: int = 12) -> torch.Tensor:
    """Every pixel of every picture a different value in [-1, 1): a crop tells where it came from."""
    values = torch.arange(n * size * size, dtype=torch.float64).view(n, 1, size, size) / (n * size * size) * 2 - 1
    return values.expand(n, 3, size, size).float()


def where_from(crop: torch.Tensor, n: int = 3, size: int = 12) -> tuple[int, int, int]:
    index = round((float(crop[0, 0, 0]) + 1) / 2 * n * size * size)
    return index // (size * size), index % (size * size) // size, index % size


def test_crops_lie_inside_the_pictures_and_low_res_is_their_downsample():
    images = numbered_images()
    objective = SuperResolutionObjective(images, COSINE, crop_size=8, max_aug_level=0.0)
    batch = objective.draw(torch.Generator().manual_seed(0), TrainConfig(batch_size=64))
    assert batch["x0"].shape == (64, 3, 8, 8) and batch["low_res"].shape == (64, 3, 4, 4)
    corners = set()
    for crop in batch["x0"]:
        n, y, x = where_from(crop)
        assert y + 8 <= 12 and x + 8 <= 12
        assert torch.equal(crop, images[n, :, y:y + 8, x:x + 8])  # a real crop, in one piece
        corners.add((y, x))
    assert len(corners) > 10  # the crops move around (25 positions)
    assert not batch["aug_level"].any()
    assert torch.equal(batch["low_res"], F.avg_pool2d(batch["x0"], 2))  # no augmentation: exactly the 2x2 means


def test_augmented_low_res_is_the_noised_downsample():
    objective = SuperResolutionObjective(smooth_images(5, 16), COSINE, crop_size=16, max_aug_level=0.4)
    batch = objective.draw(torch.Generator().manual_seed(1), TrainConfig(batch_size=32))
    level = batch["aug_level"]
    assert level.shape == (32,) and 0 <= level.min() and level.max() <= 0.4 and level.std() > 0.05
    expected = noise_augment(F.avg_pool2d(batch["x0"], 2), level, batch["aug_eps"])
    assert torch.allclose(batch["low_res"], expected, atol=1e-6)
    assert not torch.allclose(batch["low_res"], F.avg_pool2d(batch["x0"], 2), atol=1e-3)


def test_draw_is_deterministic_with_a_generator():
    objective = SuperResolutionObjective(smooth_images(5, 16), COSINE, crop_size=8, max_aug_level=0.3)
    config = TrainConfig(batch_size=8)
    a, b, c = (objective.draw(torch.Generator().manual_seed(s), config) for s in (7, 7, 8))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["x0"], c["x0"]) and not torch.equal(a["eps"], c["eps"])


def test_loss_is_per_sample_noise_prediction(model):
    objective = SuperResolutionObjective(smooth_images(5, 16), COSINE, crop_size=16, max_aug_level=0.3)
    batch = objective.draw(torch.Generator().manual_seed(2), TrainConfig(batch_size=4))
    with torch.no_grad():
        loss = objective.loss(model, batch)
        xt = COSINE.add_noise(batch["x0"], batch["eps"], batch["t"])
        by_hand = (model(xt, batch["t"], batch["low_res"], batch["aug_level"]) - batch["eps"]).pow(2).mean((1, 2, 3))
    assert loss.shape == (4,) and torch.allclose(loss, by_hand)
    assert objective.groups(batch).tolist() == (batch["t"] // 100).tolist()
    assert objective.describe()["crop_size"] == 16 and objective.describe()["max_aug_level"] == 0.3


def test_objective_errors():
    images = smooth_images(2, 16)
    with pytest.raises(ValueError, match="crop_size must be even.*got 7"):
        SuperResolutionObjective(images, COSINE, crop_size=7, max_aug_level=0.1)
    with pytest.raises(ValueError, match="at most the pictures' 16x16, got 32"):
        SuperResolutionObjective(images, COSINE, crop_size=32, max_aug_level=0.1)
    with pytest.raises(ValueError, match=r"max_aug_level must be a number in \[0, 1\]"):
        SuperResolutionObjective(images, COSINE, crop_size=8, max_aug_level=-0.1)
    with pytest.raises(ValueError, match=r"scaled to \[-1, 1\]"):
        SuperResolutionObjective(images * 3, COSINE, crop_size=8, max_aug_level=0.1)
    with pytest.raises(ValueError, match="NaN or inf"):
        SuperResolutionObjective(torch.full((2, 3, 16, 16), float("nan")), COSINE, crop_size=8, max_aug_level=0.1)
    with pytest.raises(TypeError, match="schedule must be a NoiseSchedule"):
        SuperResolutionObjective(images, "cosine", crop_size=8, max_aug_level=0.1)
    objective = SuperResolutionObjective(images, COSINE, crop_size=8, max_aug_level=0.1)
    with pytest.raises(ValueError, match="cond_drop_prob=0"):
        objective.draw(torch.Generator(), TrainConfig(batch_size=4, cond_drop_prob=0.1))


# ----- learning and sampling ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained():
    """The tiny upsampler trained 120 steps (seconds) on 8x8 crops of smooth 16x16 pictures, augmentation up to 0.3."""
    torch.manual_seed(0)
    model = Upsampler(UpsamplerConfig.tiny())
    images = smooth_images(64, 16)
    config = TrainConfig(steps=120, batch_size=16, lr=3e-3, warmup_steps=10, ema_decay=0.0, log_every=10,
                         checkpoint_every=1000)
    threads = torch.get_num_threads()  # a module fixture runs before conftest's one_thread: one thread here too
    torch.set_num_threads(1)
    try:
        state = fit(model, SuperResolutionObjective(images, COSINE, crop_size=8, max_aug_level=0.3), config,
                    progress=False)
    finally:
        torch.set_num_threads(threads)
    return state, images


def test_the_loss_falls_and_the_low_res_is_used(trained):
    state, images = trained
    losses = state.history.losses
    assert losses[-1] < 0.4 * losses[0], losses
    model, x0 = state.ema.model, smooth_images(16, 16, seed=9)  # unseen pictures, whole: no crops
    eps = randn(*x0.shape, seed=3)
    right = wrong = 0.0
    with torch.no_grad():
        for step in (300, 600):
            t = torch.full((16,), step)
            xt = COSINE.add_noise(x0, eps, t)
            right += (model(xt, t, downsample(x0), 0.0) - eps).pow(2).mean()
            wrong += (model(xt, t, downsample(x0).roll(1, 0), 0.0) - eps).pow(2).mean()  # another picture's
    assert right < 0.7 * wrong, (right, wrong)


def test_upsample_shape_range_determinism_and_fidelity(trained):
    state, _ = trained
    model, x0 = state.ema.model, smooth_images(4, 16, seed=9)
    low_res = downsample(x0)  # (4, 3, 8, 8)

    def run(seed: int, **kwargs) -> torch.Tensor:
        return upsample(model, low_res, schedule=COSINE, steps=kwargs.pop("steps", 10), augmentation_level=0.1,
                        generator=torch.Generator().manual_seed(seed), **kwargs)

    a, b, c = run(0), run(0), run(1)
    assert a.shape == (4, 3, 16, 16) and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    # after 120 steps of training the sample agrees with its low res clearly better than with another picture's
    # (0.27 against 0.46 mean absolute difference when written); an upsampler that ignored it would score ~1:1
    # (sampled from noise, strength 1, so that only the model can bring the low res in)
    fresh = run(0, strength=1.0)
    assert (downsample(fresh) - low_res).abs().mean() < 0.75 * (downsample(fresh) - low_res.roll(1, 0)).abs().mean()
    assert run(0, sampler="ddpm", steps=3).shape == (4, 3, 16, 16)
    assert run(0, sampler="euler", steps=3, strength=1.0).shape == (4, 3, 16, 16)
    with pytest.raises(ValueError, match="strength < 1 starts part-way through DDPM or DDIM"):
        run(0, sampler="euler", steps=3)
    torch.testing.assert_close(run(0, strength=0.0), enlarge(low_res).clamp(-1, 1))  # no step: the enlargement
    with pytest.raises(ValueError, match="strength must be a number from 0"):
        run(0, strength=1.5)
    model.train()
    run(0, steps=2)
    assert model.training  # the mode it had is restored
    model.eval()


def test_upsample_errors(model):
    low_res = randn(2, 3, 8, 8).clamp(-1, 1)
    with pytest.raises(ValueError, match=r"augmentation_level must lie in \[0, 1\]"):
        upsample(model, low_res, schedule=COSINE, steps=5, augmentation_level=-0.2)
    with pytest.raises(ValueError, match="unknown sampler 'fast'"):
        upsample(model, low_res, schedule=COSINE, steps=5, augmentation_level=0.1, sampler="fast")
    with pytest.raises(ValueError, match=r"scaled to \[-1, 1\]"):
        upsample(model, low_res * 5, schedule=COSINE, steps=5, augmentation_level=0.1)


def test_unet_config_without_attention_is_accepted_as_is():
    """The scenes preset is the chapter-03 U-Net with 6 inputs and no attention: nothing else is special."""
    unet = UpsamplerConfig.scenes().unet
    assert unet == UNetConfig(in_channels=6, out_channels=3, image_size=32, channel_mults=(1, 2, 2),
                              mid_attention=False)


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_trains_and_upsamples_on_a_device(device):
    """Under tests/fake_device.py: batches drawn on the CPU, the augmentation's float64 kept off MPS, the
    sampling noise drawn from a CPU generator, at most one host-device read per log and per sampling call."""
    from fake_device import FakeDevice

    torch.manual_seed(0)
    model = Upsampler(UpsamplerConfig.tiny())
    config = TrainConfig(steps=4, batch_size=4, warmup_steps=1, log_every=2, checkpoint_every=100)
    objective = SuperResolutionObjective(smooth_images(4, 16), COSINE, crop_size=8, max_aug_level=0.3)
    with FakeDevice(device) as fd:
        state = fit(model, objective, config, device=torch.device(device), progress=False)
        assert state.step == 4 and fd.syncs <= 2, fd.sync_sites
        before = fd.syncs
        x = upsample(model, downsample(smooth_images(2, 16)).to(device), schedule=COSINE, steps=3,
                     augmentation_level=0.1, generator=torch.Generator().manual_seed(0))
        assert x.device.type == device and x.shape == (2, 3, 16, 16)
    assert fd.syncs - before <= 2, fd.sync_sites  # check_images reads the low res's min and max


def test_tiny_upsampler_preset_trains_publishes_and_upsamples(tmp_path):
    """`train --preset tiny_upsampler` end to end: 16x16 crops of 64x64 scenes, a checkpoint, then ``upsample``."""
    from diffusion_lab.cli.commands import build_model, train_command
    from diffusion_lab.cli.presets import UPSAMPLER_MAX_AUG_LEVEL, build_objective, get_preset

    preset = get_preset("tiny_upsampler")
    objective = build_objective(preset, build_model(preset))
    assert isinstance(objective, SuperResolutionObjective) and objective.images_hr.shape[1:] == (3, 64, 64)
    assert objective.crop_size == 16 and objective.max_aug_level == UPSAMPLER_MAX_AUG_LEVEL > 0
    train_command("tiny_upsampler", steps=2, out=tmp_path / "run", checkpoints_root=tmp_path, progress=False)
    pre = load_pretrained("tiny_upsampler", root=tmp_path)
    assert isinstance(pre.model, Upsampler) and pre.info["kind"] == "upsampler"
    low_res = objective.images_hr[:2, :, ::2, ::2]  # (2, 3, 32, 32): whole pictures, not crops
    x = upsample(pre.model, low_res, schedule=pre.schedule, steps=2, augmentation_level=0.1,
                 generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 3, 64, 64)
