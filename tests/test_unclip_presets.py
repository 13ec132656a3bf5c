"""Chapter 10's training recipes: the upsampler's two-scale pictures and the stages that learn from a CLIP."""

from __future__ import annotations

import dataclasses
import types

import numpy as np
import pytest
import torch

from diffusion_lab.cli import presets
from diffusion_lab.cli.presets import build_objective, checkpoint_extra, get_preset
from diffusion_lab.data.scenes import make_scenes, multiscale_pictures, scene_vocabulary
from diffusion_lab.models.clip import CLIP, CLIPConfig
from diffusion_lab.training import DiffusionObjective, PriorObjective, RegressionPriorObjective


def test_multiscale_pictures_are_half_whole_scenes_and_half_windows_of_scenes_twice_the_size():
    pictures = multiscale_pictures(6, size=32, seed=4)
    assert pictures.shape == (6, 3, 32, 32) and pictures.dtype == torch.float32
    assert pictures.min() >= -1 and pictures.max() <= 1
    torch.testing.assert_close(pictures[:3], make_scenes(3, size=32, seed=4).images)
    large = make_scenes(3, size=64, seed=5).images
    corners = np.random.default_rng([4, 3]).integers(0, 33, size=(3, 2))
    for window, picture, (top, left) in zip(pictures[3:], large, corners):
        torch.testing.assert_close(window, picture[:, top:top + 32, left:left + 32])
    torch.testing.assert_close(multiscale_pictures(6, size=32, seed=4), pictures)  # deterministic
    with pytest.raises(ValueError, match="n"):
        multiscale_pictures(1, size=32)


@pytest.fixture
def tiny_clip_everywhere(monkeypatch: pytest.MonkeyPatch) -> CLIP:
    """Every preset's ``clip`` checkpoint is a fresh tiny CLIP (16x16 pictures), and the training set 40 scenes."""
    torch.manual_seed(0)
    clip = CLIP(CLIPConfig.tiny(scene_vocabulary())).eval()
    monkeypatch.setattr("diffusion_lab.pretrained.load_pretrained", lambda name, **_: types.SimpleNamespace(model=clip))
    monkeypatch.setitem(presets.SCENES_TRAIN_IMAGES, "scenes", 40)
    presets._training_scenes.cache_clear()
    yield clip
    presets._training_scenes.cache_clear()


def test_the_priors_learn_image_embeddings_from_text_embeddings_of_the_same_scenes(tiny_clip_everywhere):
    clip = tiny_clip_everywhere
    scenes = make_scenes(40, size=16, seed=0)
    for name, kind in [("unclip_prior", PriorObjective), ("unclip_regression_prior", RegressionPriorObjective)]:
        preset = get_preset(name)
        objective = build_objective(preset, None)
        assert isinstance(objective, kind)
        with torch.no_grad():
            torch.testing.assert_close(objective.image_emb, clip.encode_image(scenes.images))
            torch.testing.assert_close(objective.text_emb, clip.encode_text(clip.tokenizer.encode(scenes.captions)))
    assert get_preset("unclip_prior").clip == get_preset("unclip_decoder").clip == "clip_scenes"


def test_the_decoder_learns_pictures_conditioned_on_their_image_embeddings(tiny_clip_everywhere):
    from diffusion_lab.models.embedding_unet import EmbeddingUNet, EmbeddingUNetConfig

    preset = get_preset("unclip_decoder")
    objective = build_objective(preset, EmbeddingUNet(EmbeddingUNetConfig.tiny()))
    assert isinstance(objective, DiffusionObjective)
    scenes = make_scenes(40, size=16, seed=0)
    torch.testing.assert_close(objective.x0, scenes.images)
    with torch.no_grad():
        torch.testing.assert_close(objective.cond, tiny_clip_everywhere.encode_image(scenes.images))
    assert torch.equal(objective.null_cond, torch.zeros(16))


def test_a_clip_stage_on_other_data_is_refused_and_its_checkpoint_names_its_clip(tiny_clip_everywhere, monkeypatch):
    wrong = dataclasses.replace(get_preset("unclip_prior"), data="mnist")
    with pytest.raises(ValueError, match="trains on 'scenes' or 'scene_embeddings', not 'mnist'"):
        presets.load_training_data(wrong)
    monkeypatch.setattr("diffusion_lab.pretrained.read_manifest",
                        lambda *a: {"clip_scenes": {"sha256": {"clip_scenes.safetensors": "ab12"}}})
    assert checkpoint_extra(get_preset("unclip_decoder")) == {"clip": {"name": "clip_scenes", "sha256": "ab12"}}
    assert checkpoint_extra(get_preset("upsampler")) == {}
