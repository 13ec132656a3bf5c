"""A recipe may start from a shipped checkpoint instead of fresh weights (``Preset.init``, chapter 09's
``mnist_continued``): the weights it starts from are that checkpoint's, a checkpoint that does not fit is a
clear error, and the new checkpoint records which weights it continued."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from diffusion_lab.cli.commands import build_model
from diffusion_lab.cli.presets import checkpoint_extra, get_preset, preset_names
from diffusion_lab.models.unet import UNetConfig
from diffusion_lab.pretrained import load_pretrained, read_manifest


def test_a_fine_tuning_recipe_starts_from_the_checkpoints_weights_in_float32():
    preset = get_preset("mnist_continued")
    model = build_model(preset)
    shipped = load_pretrained(preset.init).model.state_dict()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, shipped[key].float(), rtol=0, atol=0, msg=key)


def test_a_fresh_recipe_does_not_start_from_the_checkpoint():
    fresh = build_model(get_preset("mnist")).state_dict()
    shipped = load_pretrained("mnist").model.state_dict()
    assert not torch.equal(fresh["conv_in.weight"], shipped["conv_in.weight"].float())


def test_the_checkpoint_json_records_which_weights_were_continued():
    extra = checkpoint_extra(get_preset("mnist_continued"))
    assert extra["init"] == {"name": "mnist", "sha256": read_manifest()["mnist"]["sha256"]["mnist.safetensors"]}
    assert "init" not in checkpoint_extra(get_preset("mnist"))


def test_a_checkpoint_of_another_config_is_refused_with_what_differs():
    preset = dataclasses.replace(get_preset("mnist_continued"), model_config=UNetConfig.mnist_conditional())
    with pytest.raises(ValueError, match="same kind and config"):
        build_model(preset)


def test_a_checkpoint_of_another_kind_is_refused():
    preset = dataclasses.replace(get_preset("mnist_continued"), init="mnist_flow", kind="unet")
    with pytest.raises(ValueError, match="flow_unet"):
        build_model(preset)


def test_a_checkpoint_trained_on_another_schedule_is_refused():
    preset = dataclasses.replace(get_preset("mnist_continued"), schedule="linear")
    with pytest.raises(ValueError, match="cosine"):
        build_model(preset)


@pytest.mark.parametrize("name", [n for n in preset_names() if get_preset(n).init is not None])
def test_every_fine_tuning_recipe_names_a_shipped_checkpoint_of_its_kind(name):
    preset = get_preset(name)
    assert preset.init in read_manifest()
    assert load_pretrained(preset.init).info["kind"] == preset.kind


def test_a_recipe_starts_from_its_first_stages_run_when_that_is_not_shipped(tmp_path, monkeypatch):
    """A two-stage recipe: `train --preset base` (weights left in runs/base), then the fine-tuning preset."""
    from diffusion_lab.pretrained import save_pretrained
    from diffusion_lab.schedules import NoiseSchedule

    monkeypatch.chdir(tmp_path)
    preset = dataclasses.replace(get_preset("tiny"), init="tiny_base")
    with pytest.raises(ValueError, match=r"train --preset tiny_base"):
        build_model(preset)
    torch.manual_seed(3)
    base = build_model(get_preset("tiny"))
    save_pretrained("tiny_base", base, preset.model_config, kind=preset.kind, schedule=NoiseSchedule.from_name(
        preset.schedule, preset.T), made_by={"command": "test"}, root=tmp_path / "runs" / "tiny_base")
    started = build_model(preset)
    for key, value in started.state_dict().items():
        torch.testing.assert_close(value, base.state_dict()[key], rtol=0, atol=0, msg=key)
    assert checkpoint_extra(preset)["init"]["name"] == "tiny_base"
