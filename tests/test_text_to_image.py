"""The mini Stable Diffusion of chapter 11 (TinySDPipeline, tiny_sd's presets, dynamic thresholding, RePaint) on
tiny random checkpoints: both call styles agree, determinism, negative prompts, img2img, inpainting, errors."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from tiny_sd_checkpoints import AUTOENCODER, write_autoencoder, write_tiny_sd

from diffusion_lab.cli import presets
from diffusion_lab.cli.commands import build_model, sample_command, train_command
from diffusion_lab.cli.presets import get_preset, load_training_data, noise_schedule
from diffusion_lab.data.scenes import make_scenes, scene_vocabulary
from diffusion_lab.latent import decode, encode
from diffusion_lab.models.autoencoder import AutoencoderConfig
from diffusion_lab.models.clip import CLIP, CLIPConfig
from diffusion_lab.pipelines import generate, load_pipeline
from diffusion_lab.pipelines.text_to_image import TinySDPipeline
from diffusion_lab.pretrained import CheckpointError, load_pretrained, read_manifest, save_pretrained
from diffusion_lab.sampling import DDIMScheduler, repaint
from diffusion_lab.sampling.thresholding import dynamic_threshold, dynamic_thresholding, measure_latent_range
from diffusion_lab.schedules import NoiseSchedule

PROMPT = "a red circle to the left of a blue square"


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_tiny_sd(tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture(scope="module")
def pipe(root) -> TinySDPipeline:
    return TinySDPipeline.from_pretrained("tiny_sd", root=root, device="cpu")


@pytest.fixture(scope="module")
def pictures() -> torch.Tensor:
    return make_scenes(2, size=64, seed=7).images  # (2, 3, 64, 64)


# ----- the two calls ------------------------------------------------------------------------------------------

def test_diffusers_call_and_course_call_give_the_same_pictures(pipe):
    diffusers_way = pipe(prompt=PROMPT, num_images_per_prompt=2, num_inference_steps=4, guidance_scale=3.0,
                         generator=gen(5))
    course_way = pipe(2, prompt=PROMPT, steps=4, seed=5, guidance_scale=3.0)  # DiffusionPipeline's loop
    assert diffusers_way.shape == (2, 3, 64, 64) and diffusers_way.min() >= -1 and diffusers_way.max() <= 1
    torch.testing.assert_close(diffusers_way, course_way)
    again = pipe(prompt=PROMPT, num_images_per_prompt=2, num_inference_steps=4, guidance_scale=3.0, generator=gen(5))
    assert torch.equal(again, diffusers_way)  # deterministic
    assert (pipe(2, prompt=PROMPT, steps=4, seed=6, guidance_scale=3.0) - course_way).abs().mean() > 1e-3
    assert not torch.equal(diffusers_way[0], diffusers_way[1])  # two draws of one batch differ


def test_one_generator_per_picture_redraws_a_picture_alone(pipe):
    batch = pipe(prompt=[PROMPT, "a green cross"], num_inference_steps=3, generator=[gen(1), gen(2)])
    alone = pipe(prompt="a green cross", num_inference_steps=3, generator=[gen(2)])
    torch.testing.assert_close(batch[1:], alone, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="one per picture"):
        pipe(prompt=PROMPT, num_images_per_prompt=2, num_inference_steps=3, generator=[gen(1)])


def test_negative_prompts_change_the_pictures_through_guidance(pipe):
    plain = pipe(prompt=PROMPT, num_inference_steps=3, guidance_scale=4.0, generator=gen(0))
    negative = pipe(prompt=PROMPT, negative_prompt="a green cross", num_inference_steps=3, guidance_scale=4.0,
                    generator=gen(0))
    assert (plain - negative).abs().mean() > 1e-3
    course = pipe(1, prompt=PROMPT, negative_prompt="a green cross", steps=3, guidance_scale=4.0, seed=0)
    torch.testing.assert_close(course, negative)
    with pytest.raises(ValueError, match="only acts through guidance"):
        pipe(prompt=PROMPT, negative_prompt="a green cross", num_inference_steps=3, guidance_scale=1.0)
    two = pipe(prompt=[PROMPT, PROMPT], negative_prompt="a green cross", num_images_per_prompt=2,
               num_inference_steps=3, guidance_scale=4.0, generator=[gen(0), gen(1), gen(2), gen(3)])
    torch.testing.assert_close(two[:1], negative, atol=1e-4, rtol=0)  # one negative prompt for every prompt
    each = pipe(prompt=[PROMPT, PROMPT], negative_prompt=["a green cross", "a blue square"], num_inference_steps=3,
                guidance_scale=4.0, generator=[gen(0), gen(0)])
    assert not torch.allclose(each[0], each[1])
    with pytest.raises(ValueError, match="one negative_prompt for all 2"):
        pipe(prompt=[PROMPT, PROMPT], negative_prompt=["a", "b", "c"], num_inference_steps=3)


def test_the_registry_generate_and_sample_know_tiny_sd(root, tmp_path):
    assert isinstance(load_pipeline("tiny_sd", root=root, device="cpu"), TinySDPipeline)
    x = generate("tiny_sd", 3, prompt=PROMPT, steps=3, seed=1, checkpoints_root=root, device="cpu",
                 guidance_scale=2.0, sampler="ddpm")
    assert x.shape == (3, 3, 64, 64)
    out = sample_command("tiny_sd", num=2, prompt=PROMPT, steps=3, seed=0, guidance_scale=3.0,
                         out=tmp_path / "s.npz", checkpoints_root=root)
    arrays = np.load(out)
    assert arrays["images"].shape == (2, 64, 64, 3) and arrays["images"].dtype == np.uint8
    assert list(arrays["prompts"]) == [PROMPT, PROMPT]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "draws what a prompt says"),
    ({"prompt": PROMPT, "sampler": "ddpm"}, "the course's call"),
    ({"prompt": PROMPT, "num_inference_steps": 3, "steps": 3}, "not both"),
    ({"prompt": PROMPT, "generator": gen(0), "seed": 3}, "not both"),
    ({"prompt": 7}, "prompt must be a str"),
    ({"prompt": "a purple elephant"}, "elephant"),
    ({"prompt": PROMPT, "guidance_scale": -2.0}, "guidance_scale"),
    ({"prompt": PROMPT, "dynamic_threshold": 0.995}, "a ratio"),
])
def test_bad_requests_say_what_was_wrong(pipe, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        pipe(**{"num_inference_steps": 2, **kwargs} if "steps" not in kwargs else kwargs)
    with pytest.raises(TypeError, match="course's call"):
        pipe(2, prompt=PROMPT, generator=gen(0))


def test_only_a_latent_text_checkpoint_makes_a_tiny_sd_pipeline(root):
    with pytest.raises(ValueError, match="not a text-to-image model of latents"):
        TinySDPipeline(load_pretrained(AUTOENCODER, root=root), root)


# ----- from pictures ------------------------------------------------------------------------------------------

def test_img2img_keeps_the_picture_at_strength_0_and_ignores_it_at_1(pipe, pictures):
    reconstruction = decode(pipe.autoencoder, encode(pipe.autoencoder, pictures))
    torch.testing.assert_close(pipe.img2img(pictures, PROMPT, 0.0, num_inference_steps=4), reconstruction)
    text_only = pipe(prompt=PROMPT, num_images_per_prompt=2, num_inference_steps=4, generator=gen(3))
    torch.testing.assert_close(pipe.img2img(pictures, PROMPT, 1.0, num_inference_steps=4, generator=gen(3)), text_only)
    other = make_scenes(2, size=64, seed=8).images
    torch.testing.assert_close(pipe.img2img(other, PROMPT, 1.0, num_inference_steps=4, generator=gen(3)), text_only)
    far = [(pipe.img2img(pictures, PROMPT, s, num_inference_steps=10, generator=gen(3)) - reconstruction).abs().mean()
           for s in (0.2, 0.9)]
    assert 0 < far[0] < far[1], f"a weaker edit should stay closer to the picture: {far}"
    one = pipe.img2img(pictures[0], PROMPT, 0.5, num_inference_steps=4, generator=gen(3))  # one picture (3, H, W)
    assert one.shape == (1, 3, 64, 64)
    with pytest.raises(ValueError, match="autoencoder's size"):
        pipe.img2img(pictures[:, :, :32, :32], PROMPT, 0.5)
    with pytest.raises(ValueError, match="strength"):
        pipe.img2img(pictures, PROMPT, 1.5)


def test_the_mask_reaches_the_latents_by_max_pooling(pipe):
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[17, 30] = True  # one pixel: its 4x4 block's latent cell is redrawn, nothing else
    latent = pipe.latent_mask(mask, 2)
    assert latent.shape == (1, 1, 16, 16) and latent.sum() == 1 and latent[0, 0, 4, 7] == 1
    box = torch.zeros(64, 64, dtype=torch.bool)
    box[16:48, 8:40] = True
    assert torch.equal(pipe.latent_mask(box, 1)[0, 0].nonzero().amin(0), torch.tensor([4, 2]))
    assert pipe.latent_mask(box, 1).sum() == 8 * 8
    with pytest.raises(ValueError, match="True/False"):
        pipe.latent_mask(box.float() * 0.5, 1)
    with pytest.raises(ValueError, match="mask must be a tensor"):
        pipe.latent_mask(box[:32], 1)


def test_inpainting_redraws_inside_the_mask_and_keeps_the_rest(pipe, pictures):
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[16:48, 16:48] = True
    out = pipe.inpaint(pictures, mask, PROMPT, num_inference_steps=5, generator=gen(1))
    reconstruction = decode(pipe.autoencoder, encode(pipe.autoencoder, pictures))
    diff = (out - reconstruction).abs()
    inside, outside = diff[..., 16:48, 16:48].mean(), diff[..., :, :4].mean()  # the left strip, far from the box
    assert inside > 4 * outside, f"inside {inside:.3f}, outside {outside:.3f}"
    again = pipe.inpaint(pictures, mask, PROMPT, num_inference_steps=5, generator=gen(1))
    assert torch.equal(out, again)


def test_repaint_ends_with_the_known_latents_exactly():
    schedule = NoiseSchedule.from_name("cosine", 1000)
    scheduler = DDIMScheduler(schedule, clip_sample=False)
    scheduler.set_timesteps(5)
    x0 = torch.randn(2, 4, 8, 8, generator=gen(0))
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    g = gen(1)
    calls = []

    def noise(shape):
        calls.append(shape)
        return torch.randn(shape, generator=g)

    out = repaint(lambda xt, t: 0.3 * xt, scheduler, x0, mask, torch.randn(2, 4, 8, 8, generator=g), noise)
    keep = mask.expand_as(x0) == 0
    assert torch.equal(out[keep], x0[keep]) and not torch.allclose(out[~keep], x0[~keep])
    assert len(calls) == 4  # fresh noise for the known part at every step but the last
    with pytest.raises(ValueError, match="broadcast"):
        repaint(lambda xt, t: xt, scheduler, x0, mask[..., :4], x0, noise)


# ----- dynamic thresholding ----------------------------------------------------------------------------------

def test_dynamic_threshold_is_imagens_in_pixels_and_leaves_unsaturated_guesses_alone():
    calm = torch.rand(1, 3, 8, 8) * 1.8 - 0.9  # inside [-1, 1]
    hot = torch.linspace(-3, 3, 192).reshape(1, 3, 8, 8)
    out = dynamic_threshold(torch.cat([calm, hot]), 99.5)
    assert torch.equal(out[0], calm[0])
    s = torch.quantile(hot.abs().flatten(), 0.995)  # Imagen: s = percentile, clamp to [-s, s], divide by s
    torch.testing.assert_close(out[1], hot[0].clamp(-s, s) / s)
    assert out[1].abs().max() <= 1 + 1e-6
    latent = dynamic_threshold(torch.cat([calm * 2, hot]), 99.5, data_range=2.5)  # latents: r measured, not 1
    assert torch.equal(latent[0], calm[0] * 2) and latent[1].abs().max() <= 2.5 + 1e-5


def test_thresholding_wrapper_changes_only_saturated_samples():
    schedule = NoiseSchedule.from_name("cosine", 1000)
    xt = torch.randn(2, 4, 8, 8, generator=gen(0))
    t = torch.tensor([500, 500])
    eps = torch.randn(2, 4, 8, 8, generator=gen(1))
    eps[1] *= -40  # a guess of x_0 far outside any range

    def model(x, t):
        return eps

    wrapped = dynamic_thresholding(model, schedule, 99.5, data_range=1e3)
    assert torch.equal(wrapped(xt, t), eps)  # nothing saturated: bit for bit the model's own
    wrapped = dynamic_thresholding(model, schedule, 99.5, data_range=3.0)
    out = wrapped(xt, t)
    abar = schedule.alpha_bars[500]
    x0 = (xt - (1 - abar).sqrt() * out) / abar.sqrt()  # the guess the new eps implies
    assert x0[1].abs().max() <= 3.0 + 1e-3 and not torch.equal(out[1], eps[1])
    with pytest.raises(ValueError, match="whole steps"):
        wrapped(xt, t.float())


def test_pipeline_thresholds_against_the_recorded_latent_range(pipe, root, tmp_path, monkeypatch):
    kwargs = {"prompt": PROMPT, "num_inference_steps": 4, "guidance_scale": 8.0}
    plain = pipe(**kwargs, generator=gen(2))
    thresholded = pipe(**kwargs, generator=gen(2), dynamic_threshold=90.0)
    assert (plain - thresholded).abs().mean() > 1e-4
    torch.testing.assert_close(pipe(1, prompt=PROMPT, steps=4, guidance_scale=8.0, seed=2, dynamic_threshold=90.0),
                               thresholded)
    monkeypatch.setattr(pipe, "latent_range", lambda: 1e6)  # nothing saturates: the same pictures as without
    assert torch.equal(pipe(**kwargs, generator=gen(2), dynamic_threshold=90.0), plain)
    folder = write_tiny_sd(tmp_path, latent_range=False)
    old = TinySDPipeline.from_pretrained("tiny_sd", root=folder, device="cpu")
    with pytest.raises(CheckpointError, match="latents' range"):
        old(**kwargs, dynamic_threshold=99.5)


def test_the_latent_range_is_a_high_quantile_of_the_values():
    z = torch.arange(1, 1001, dtype=torch.float32).reshape(10, 100) * torch.tensor([1.0, -1.0]).repeat(5)[:, None]
    assert measure_latent_range(z) == 999.0
    assert measure_latent_range(z, quantile=1.0) == 1000.0
    with pytest.raises(ValueError, match="all zero"):
        measure_latent_range(torch.zeros(4, 4))


# ----- the presets -------------------------------------------------------------------------------------------

def test_the_chapter_11_presets():
    sd, ae = get_preset("tiny_sd"), get_preset("scenes64_autoencoder")
    unet = sd.model_config.unet
    assert (unet.in_channels, unet.out_channels, unet.image_size) == (4, 4, 16)
    assert unet.cross_attention_resolutions == (16, 8) and unet.context_dim == sd.model_config.text.width
    assert sd.autoencoder == "scenes64_autoencoder" and sd.data == "scenes" and sd.conditional and sd.float16
    assert sd.train.cond_drop_prob == 0.1 and sd.train.ema_decay > 0 and sd.train.mixed_precision
    assert 1.5e6 < sum(p.numel() for p in build_model(sd).parameters()) < 3e6
    assert noise_schedule(sd) is not None
    shipped = get_preset("shapes64_autoencoder")
    assert ae.model_config == AutoencoderConfig.shapes64() and ae.train == shipped.train
    assert (ae.kl_weight, ae.float16, ae.data) == (shipped.kl_weight, shipped.float16, "scenes")
    assert get_preset("tiny_latent_text").kind == sd.kind == "latent_text_unet"


def test_the_scenes_autoencoder_learns_the_training_scenes_pictures(monkeypatch):
    monkeypatch.setitem(presets.SCENES_TRAIN_IMAGES, "scenes", 6)
    presets._training_scenes.cache_clear()
    images, labels = load_training_data(get_preset("scenes64_autoencoder"))
    presets._training_scenes.cache_clear()
    assert labels is None
    torch.testing.assert_close(images, make_scenes(6, size=64, seed=0, split="train").images)


def test_tiny_latent_text_trains_on_encoded_scenes_and_samples(tmp_path, monkeypatch):
    data = tmp_path / "data"
    autoencoder = write_autoencoder(data / "checkpoints")
    monkeypatch.setenv("DIFFUSION_LAB_DATA", str(data))
    monkeypatch.setenv("DIFFUSION_LAB_DEVICE", "cpu")
    preset = get_preset("tiny_latent_text")
    latents, ids = load_training_data(preset)
    scenes = make_scenes(256, size=64, seed=0, split="train")
    torch.testing.assert_close(latents, encode(autoencoder, scenes.images))
    assert ids.shape == (256, preset.model_config.text.max_length) and ids.dtype == torch.int64
    train_command("tiny_latent_text", steps=4, out=tmp_path / "run", publish=True, progress=False)
    info = json.loads((data / "checkpoints" / "tiny_latent_text.json").read_text())
    assert info["kind"] == "latent_text_unet" and info["latent"]["autoencoder"] == AUTOENCODER
    assert info["latent"]["latent_scale"] == float(autoencoder.latent_scale)
    assert math.isclose(info["latent"]["latent_range"], measure_latent_range(latents))
    out = sample_command("tiny_latent_text", num=2, prompt=PROMPT, steps=2, guidance_scale=2.0,
                         out=tmp_path / "x.npz")
    assert np.load(out)["images"].shape == (2, 64, 64, 3)


def test_a_borrowed_text_encoder_is_copied_in_frozen_stays_frozen_and_is_recorded(tmp_path, monkeypatch):
    """tiny_sd's recipe: a CLIP's text encoder read through, never trained (Stable Diffusion's arrangement)."""
    data = tmp_path / "data"
    write_autoencoder(data / "checkpoints")
    torch.manual_seed(3)
    clip = CLIP(CLIPConfig.tiny(scene_vocabulary()))
    save_pretrained("tiny_clip", clip, clip.config, kind="clip", schedule=None, made_by={}, root=data / "checkpoints")
    monkeypatch.setenv("DIFFUSION_LAB_DATA", str(data))
    monkeypatch.setenv("DIFFUSION_LAB_DEVICE", "cpu")
    tiny = get_preset("tiny_latent_text")
    config = dataclasses.replace(tiny.model_config, text=clip.config.text,
                                 unet=dataclasses.replace(tiny.model_config.unet, context_dim=clip.config.text.width))
    preset = dataclasses.replace(tiny, name="borrowing", model_config=config, text_encoder="tiny_clip")
    monkeypatch.setattr("diffusion_lab.cli.commands.get_preset", {"borrowing": preset}.__getitem__)
    model = build_model(preset)
    assert not any(p.requires_grad for p in model.text_encoder.parameters())
    assert all(p.requires_grad for p in model.unet.parameters())
    train_command("borrowing", steps=3, out=tmp_path / "run", publish=True, progress=False)
    info = json.loads((data / "checkpoints" / "borrowing.json").read_text())
    assert info["text_encoder"]["name"] == "tiny_clip"
    assert info["text_encoder"]["sha256"] == read_manifest(data / "checkpoints")["tiny_clip"]["sha256"][
        "tiny_clip.safetensors"]
    trained = load_pretrained("borrowing").model
    for name, weight in clip.text_encoder.state_dict().items():
        torch.testing.assert_close(trained.text_encoder.state_dict()[name], weight, msg=name)
    assert not torch.equal(trained.unet.conv_in.weight, build_model(preset).unet.conv_in.weight)  # the U-Net learnt
    mismatched = dataclasses.replace(preset, model_config=tiny.model_config)  # width 32 against the CLIP's 16
    with pytest.raises(ValueError, match="tiny_clip's text encoder .* is not the one this model is built with"):
        build_model(mismatched)


# ----- on a device ---------------------------------------------------------------------------------------------

def test_every_call_runs_on_a_device_with_a_sync_or_two(root, pictures, monkeypatch):
    """Under ``FakeDevice`` (tests/fake_device.py): no CPU/GPU mixing, no CPU generator drawing on the device, and
    host-device syncs that do not grow with the steps (the autoencoder's scale s read once per encode / decode)."""
    from fake_device import FakeDevice
    from tiny_sd_checkpoints import write_upsampler

    from diffusion_lab.pipelines.imagine import imagine, upscale, vary, vary_region

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr("diffusion_lab.pipelines.batching.available_memory", lambda device: None)
    write_upsampler(root)
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[8:24, 8:24] = True
    with FakeDevice() as fd:
        pipe = TinySDPipeline.from_pretrained("tiny_sd", root=root, device="cuda")
        for call, allowed in [
            (lambda: pipe(prompt=PROMPT, negative_prompt="a green cross", num_inference_steps=6, generator=[gen(0)],
                          dynamic_threshold=99.5), 1),
            (lambda: pipe(2, prompt=PROMPT, steps=6, dynamic_threshold=99.5), 2),
            (lambda: pipe.img2img(pictures, PROMPT, 0.5, num_inference_steps=6, generator=gen(0)), 2),
            (lambda: pipe.inpaint(pictures, mask, PROMPT, num_inference_steps=6, generator=gen(0)), 2),
        ]:
            before = fd.syncs
            assert call().device.type == "cuda"
            assert fd.syncs - before <= allowed, fd.sync_sites[-5:]
        job = imagine(f"{PROMPT} --seed 1 --steps 3 --chaos 50", pipeline=pipe)
        vary(job, 2, seed=1, pipeline=pipe)
        vary_region(job, 1, (0, 0, 16, 16), seed=1, pipeline=pipe)
        assert upscale(job, 1, root=root, device="cuda", steps=2).images.shape == (1, 128, 128, 3)
