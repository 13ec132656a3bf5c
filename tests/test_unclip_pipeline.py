"""The mini DALL-E 2 pipeline (chapter 10) on tiny, untrained stages: wiring, shapes, determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fresh_weights import awake

from diffusion_lab.data.scenes import scene_vocabulary
from diffusion_lab.models.clip import CLIP, CLIPConfig
from diffusion_lab.models.embedding_unet import EmbeddingUNet, EmbeddingUNetConfig
from diffusion_lab.models.prior import DiffusionPrior, PriorConfig
from diffusion_lab.models.regression_prior import RegressionPrior, RegressionPriorConfig
from diffusion_lab.models.upsampler import Upsampler, UpsamplerConfig
from diffusion_lab.pipelines import generate, load_pipeline
from diffusion_lab.pipelines.unclip import STAGES, UnCLIPPipeline
from diffusion_lab.pretrained import read_manifest, save_pretrained
from diffusion_lab.schedules import NoiseSchedule

PROMPT = "a small red circle in the top left"


def _save_stages(root, *, clip_seed: int = 0) -> None:
    torch.manual_seed(clip_seed)
    clip = CLIP(CLIPConfig.tiny(scene_vocabulary()))
    save_pretrained(STAGES["clip"], clip, clip.config, kind="clip", schedule=None, made_by={}, root=root)
    digest = read_manifest(root)[STAGES["clip"]]["sha256"][f"{STAGES['clip']}.safetensors"]
    learnt = {"clip": {"name": STAGES["clip"], "sha256": digest}}
    torch.manual_seed(1)
    unit = F.normalize(torch.randn(64, 16), dim=-1)  # stand-ins for CLIP image embeddings, to measure a scale
    prior = DiffusionPrior(PriorConfig.tiny(embed_dim=16))
    regression = RegressionPrior(RegressionPriorConfig.tiny(embed_dim=16))
    for model in (prior, regression):
        model.embedding_scale.measure(unit)
    save_pretrained(STAGES["prior"], prior, prior.config, kind="prior", schedule=prior.schedule, made_by={},
                    root=root, extra=learnt)
    save_pretrained(STAGES["regression_prior"], regression, regression.config, kind="regression_prior",
                    schedule=None, made_by={}, root=root, extra=learnt)
    decoder = awake(EmbeddingUNet(EmbeddingUNetConfig.tiny()))  # so the embedding shows in its output
    save_pretrained(STAGES["decoder"], decoder, decoder.config, kind="embedding_unet",
                    schedule=NoiseSchedule.from_name("cosine", 1000), made_by={}, root=root, extra=learnt)
    upsampler = Upsampler(UpsamplerConfig.tiny())
    save_pretrained(STAGES["upsampler"], upsampler, upsampler.config, kind="upsampler",
                    schedule=NoiseSchedule.from_name("cosine", 1000), made_by={}, root=root)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    path = tmp_path_factory.mktemp("unclip")
    _save_stages(path)
    return path


@pytest.fixture(scope="module")
def pipe(root) -> UnCLIPPipeline:
    return UnCLIPPipeline.from_pretrained("unclip", root=root, device="cpu")


def test_both_call_styles_give_the_same_pictures_at_twice_the_decoder_size(pipe):
    diffusers_way = pipe(prompt=PROMPT, num_images_per_prompt=2, num_inference_steps=3,
                         generator=torch.Generator().manual_seed(5))
    course_way = pipe(2, prompt=PROMPT, steps=3, seed=5)
    assert diffusers_way.shape == (2, 3, 32, 32)  # the tiny decoder draws 16x16, the upsampler doubles it
    assert diffusers_way.min() >= -1 and diffusers_way.max() <= 1
    torch.testing.assert_close(diffusers_way, course_way)
    assert not torch.equal(pipe(2, prompt=PROMPT, steps=3, seed=6), course_way)
    small = pipe(2, prompt=[PROMPT, "a red circle to the left of a blue square"], steps=3, seed=5, upscale=False)
    assert small.shape == (2, 3, 16, 16)


@pytest.mark.parametrize("prior", ["diffusion", "regression", "text"])
def test_each_prior_gives_unit_image_embeddings(pipe, prior):
    text_emb = pipe.encode_prompt([PROMPT, PROMPT])
    image_emb = pipe.prior_embeddings(text_emb, prior=prior, steps=3, generator=torch.Generator().manual_seed(0))
    assert image_emb.shape == (2, 16)
    torch.testing.assert_close(image_emb.norm(dim=-1), torch.ones(2))
    if prior == "text":
        assert torch.equal(image_emb, text_emb)
    if prior == "regression":  # deterministic: one answer per caption
        torch.testing.assert_close(image_emb[0], image_emb[1])


def test_variations_and_text_diffs(pipe):
    image = pipe(1, prompt=PROMPT, steps=2, seed=0)[0]  # (3, 32, 32): shrunk to CLIP's 16 to embed
    variations = pipe.image_variations(image, 3, steps=2, seed=1)
    assert variations.shape == (3, 3, 32, 32) and not torch.equal(variations[0], variations[1])
    edits = pipe.text_diff(image, "a small red circle in the top left", "a small blue circle in the top left",
                           [0.0, 0.5], steps=2, seed=1, upscale=False)
    assert edits.shape == (2, 3, 16, 16) and not torch.equal(edits[0], edits[1])


def test_generate_and_the_registry_know_unclip_by_name(root):
    assert isinstance(load_pipeline("unclip", root=root, device="cpu"), UnCLIPPipeline)
    x = generate("unclip", 2, prompt=PROMPT, steps=2, seed=3, checkpoints_root=root, device="cpu")
    assert x.shape == (2, 3, 32, 32)


def test_the_cli_writes_uint8_rgb_images(root, tmp_path, capsys):
    from diffusion_lab.cli.commands import sample_command

    out = sample_command("unclip", num=2, prompt=PROMPT, steps=2, seed=0, out=tmp_path / "u.npz",
                         checkpoints_root=root)
    arrays = np.load(out)
    assert arrays["images"].shape == (2, 32, 32, 3) and arrays["images"].dtype == np.uint8
    assert list(arrays["prompts"]) == [PROMPT, PROMPT]
    printed = capsys.readouterr().out  # the cascade's cost, not a single network's
    assert "2 steps: 2 decoder evaluations per picture, after 25 of the prior and before 20 of the upsampler" in printed


def test_the_cli_leaves_the_decoders_guidance_to_the_pipeline(root, tmp_path):
    """No --guidance-scale: the pipeline's own w (3), not the chapter models' 1 (which would switch guidance off)."""
    from diffusion_lab.cli.commands import sample_command

    def images(name: str, **guidance: float) -> np.ndarray:
        out = sample_command("unclip", num=2, prompt=PROMPT, steps=2, seed=0, out=tmp_path / name,
                             checkpoints_root=root, **guidance)
        return np.load(out)["images"]

    default = images("default.npz")
    assert np.array_equal(default, images("three.npz", guidance_scale=3.0))
    assert not np.array_equal(default, images("one.npz", guidance_scale=1.0))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "unclip draws what a prompt says"),
    ({"prompt": PROMPT, "class_label": 3}, "does not take a class"),
    ({"prompt": PROMPT, "negative_prompt": "a red square"}, "does not take a negative prompt"),
    ({"prompt": PROMPT, "prior": "clip"}, "prior must be one of"),
    ({"prompt": PROMPT, "guidance_scale": -1.0}, "guidance_scale"),
    ({"prompt": 7}, "prompt must be a str"),
    ({"prompt": "a purple elephant"}, "elephant"),
])
def test_bad_requests_say_what_was_wrong(pipe, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        pipe(1, steps=2, **kwargs) if "prompt" not in kwargs or kwargs["prompt"] != 7 else pipe(**kwargs)


def test_stages_that_learnt_from_another_clip_are_refused(tmp_path):
    _save_stages(tmp_path)
    clip = CLIP(CLIPConfig.tiny(scene_vocabulary()))  # a retrained CLIP: other weights, other digest
    save_pretrained(STAGES["clip"], clip, clip.config, kind="clip", schedule=None, made_by={}, root=tmp_path)
    with pytest.raises(ValueError, match="learnt from another CLIP"):
        UnCLIPPipeline.from_pretrained("unclip", root=tmp_path, device="cpu")
