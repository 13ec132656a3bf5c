"""Each pipeline samples with its own default sampler (chapter 09): DDIM for the noise predictors, Euler for a
flow, so `generate(name, N)` and `python -m diffusion_lab sample NAME` work on every model without --sampler,
and say which sampler they used. Tiny untrained checkpoints: wiring, not image quality."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_flow_checkpoints import write_flow_and_eps

from diffusion_lab.cli.main import main
from diffusion_lab.cli.presets import checkpoint_extra, get_preset, preset_names
from diffusion_lab.models.unet import UNet, UNetConfig
from diffusion_lab.pipelines import generate, load_pipeline
from diffusion_lab.pipelines.base import DiffusionPipeline
from diffusion_lab.pipelines.class_conditional import ClassConditionalPipeline
from diffusion_lab.pipelines.defaults import default_sampling
from diffusion_lab.pipelines.flow import FlowImagePipeline
from diffusion_lab.pipelines.latent import LatentImagePipeline
from diffusion_lab.pipelines.samplers import check_fits
from diffusion_lab.pipelines.text_conditional import TextConditionalPipeline
from diffusion_lab.pipelines.unconditional import ImagePipeline, PointsPipeline
from diffusion_lab.pretrained import load_pretrained, read_manifest, save_pretrained
from diffusion_lab.schedules import NoiseSchedule

PIPELINE_CLASSES = [DiffusionPipeline, PointsPipeline, ImagePipeline, ClassConditionalPipeline,
                    TextConditionalPipeline, LatentImagePipeline, FlowImagePipeline]


@pytest.fixture(autouse=True)
def cpu_only(monkeypatch):
    monkeypatch.setenv("DIFFUSION_LAB_DEVICE", "cpu")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """flow: a tiny flow_unet (no schedule); uncond: a tiny eps U-Net."""
    return write_flow_and_eps(tmp_path_factory.mktemp("checkpoints"))


@pytest.mark.parametrize("cls", PIPELINE_CLASSES, ids=lambda c: c.__name__)
def test_every_pipelines_default_sampler_fits_what_its_model_predicts(cls) -> None:
    assert check_fits(cls.default_sampler, cls.predicts)
    assert cls.default_steps == 50
    assert cls.default_sampler == ("euler" if cls is FlowImagePipeline else "ddim")


def test_sampler_and_steps_fills_in_only_what_is_missing(root) -> None:
    flow, uncond = load_pipeline("flow", root=root), load_pipeline("uncond", root=root)
    assert flow.sampler_and_steps() == ("euler", 50) and uncond.sampler_and_steps() == ("ddim", 50)
    assert flow.sampler_and_steps("heun") == ("heun", 50) and uncond.sampler_and_steps(steps=7) == ("ddim", 7)
    assert uncond.sampler_and_steps("ddpm", 1000) == ("ddpm", 1000)


def test_generate_without_a_sampler_uses_the_models_default(root) -> None:
    flow = generate("flow", 2, seed=3, checkpoints_root=root)
    assert torch.equal(flow, generate("flow", 2, sampler="euler", steps=50, seed=3, checkpoints_root=root))
    uncond = generate("uncond", 2, steps=4, seed=3, checkpoints_root=root)  # the noise predictor: DDIM, as before
    assert torch.equal(uncond, generate("uncond", 2, sampler="ddim", steps=4, seed=3, checkpoints_root=root))
    assert not torch.equal(uncond, generate("uncond", 2, sampler="euler", steps=4, seed=3, checkpoints_root=root))


@pytest.mark.parametrize("name, printed", [
    ("flow", "euler (the default for flow), 50 steps: 50 network evaluations per sample"),
    ("uncond", "ddim (the default for uncond), 50 steps: 50 network evaluations per sample"),
])
def test_the_cli_without_sampler_uses_and_names_the_models_default(root, tmp_path, capsys, name, printed) -> None:
    out = tmp_path / f"{name}.npz"
    assert main(["sample", name, "--num", "2", "--out", str(out), "--checkpoint-dir", str(root)]) == 0
    assert printed in capsys.readouterr().out
    with np.load(out) as f:
        assert f["images"].shape == (2, 28, 28, 1) and f["images"].dtype == np.uint8


def test_the_cli_default_steps_and_a_given_sampler(root, tmp_path, capsys) -> None:
    out = tmp_path / "x.npz"
    assert main(["sample", "flow", "--num", "1", "--steps", "3", "--out", str(out), "--checkpoint-dir", str(root)]) == 0
    assert "euler (the default for flow), 3 steps: 3 network evaluations per sample" in capsys.readouterr().out
    assert main(["sample", "flow", "--num", "1", "--sampler", "heun", "--out", str(out),
                 "--checkpoint-dir", str(root)]) == 0
    assert "heun, 50 steps: 99 network evaluations per sample" in capsys.readouterr().out


# ----- a checkpoint's own default: the "sampling" entry of its JSON -----------------------------------------------


def _save_uncond(folder: Path, name: str, sampling: object) -> Path:
    """A tiny eps U-Net whose JSON carries ``sampling`` as its "sampling" entry."""
    torch.manual_seed(0)
    model = UNet(UNetConfig.tiny())
    save_pretrained(name, model, model.config, kind="unet", schedule=NoiseSchedule.from_name("cosine", 1000),
                    made_by={}, root=folder, extra={"sampling": sampling})
    return folder


def test_a_checkpoints_sampling_entry_is_its_default(tmp_path, capsys) -> None:
    root = _save_uncond(tmp_path, "own", {"sampler": "dpmpp2m_sde", "steps": 3})
    pipeline = load_pipeline("own", root=root)
    assert pipeline.sampler_and_steps() == ("dpmpp2m_sde", 3)
    assert pipeline.sampler_and_steps(steps=5) == ("dpmpp2m_sde", 5)
    assert pipeline.sampler_and_steps("dpmpp2m_sde") == ("dpmpp2m_sde", 3)  # its steps go with its sampler
    assert pipeline.sampler_and_steps("ddim") == ("ddim", 50)  # another sampler: 50, as for any checkpoint
    drawn = generate("own", 2, seed=4, checkpoints_root=root)
    assert torch.equal(drawn, generate("own", 2, sampler="dpmpp2m_sde", steps=3, seed=4, checkpoints_root=root))
    assert main(["sample", "own", "--num", "1", "--out", str(tmp_path / "x.npz"), "--checkpoint-dir", str(root)]) == 0
    assert "dpmpp2m_sde (the default for own), 3 steps: 3 network evaluations per sample" in capsys.readouterr().out
    assert DiffusionPipeline.default_sampler == "ddim"  # the class's fallback is untouched


@pytest.mark.parametrize("sampling, message", [
    ({"sampler": "dpm", "steps": 32}, "own.json's \"sampling\" entry names sampler 'dpm'; choose one of ddpm, ddim"),
    ({"sampler": "ddpm", "steps": 0}, "own.json's \"sampling\" entry has steps=0; it must be a whole number"),
    ({"sampler": "ddpm", "steps": "32"}, "has steps='32'"),
    ({"sampler": "ddpm"}, "own.json's \"sampling\" entry must be like {\"sampler\": \"ddpm\", \"steps\": 32}"),
    ("ddpm", "must be like"),
    ({"sampler": "ddpm", "steps": 32, "sigma": 20}, "optionally with guide, guide_interval, guide_scale, sigma_max"),
    ({"sampler": "dpmpp2m", "steps": 8, "sigma_max": -1}, "has sigma_max=-1; it must be a number above 0"),
    ({"sampler": "dpmpp2m", "steps": 8, "sigma_max": "20"}, "has sigma_max='20'"),
    ({"sampler": "ddim", "steps": 8, "sigma_max": 20}, "gives sigma_max, but 'ddim' does not step over noise levels"),
    ({"sampler": "ddim", "steps": 8, "guide": 3}, "has guide=3; it must name a checkpoint"),
    ({"sampler": "ddim", "steps": 8, "guide": "g", "guide_scale": -1}, "has guide_scale=-1; it must be a number >= 0"),
    ({"sampler": "ddim", "steps": 8, "guide_scale": 2}, "gives guide_scale or guide_interval but no guide"),
])
def test_a_wrong_sampling_entry_is_a_clear_error_when_loading(tmp_path, sampling, message) -> None:
    root = _save_uncond(tmp_path, "own", sampling)
    with pytest.raises(ValueError, match=re.escape(message)):
        load_pipeline("own", root=root)


def test_a_sampling_entry_that_does_not_fit_the_model(tmp_path) -> None:
    torch.manual_seed(0)
    flow = UNet(UNetConfig.tiny())
    save_pretrained("own_flow", flow, flow.config, kind="flow_unet", schedule=None, made_by={}, root=tmp_path,
                    extra={"sampling": {"sampler": "ddpm", "steps": 10}})
    with pytest.raises(ValueError, match="sampler 'ddpm' needs a model that predicts the noise eps"):
        load_pipeline("own_flow", root=tmp_path)


def test_presets_name_samplers_that_fit_their_models_and_the_json_carries_them() -> None:
    for preset in map(get_preset, preset_names()):
        if preset.sampling is not None:
            predicts = FlowImagePipeline.predicts if preset.kind == "flow_unet" else DiffusionPipeline.predicts
            info = {"name": preset.name, **checkpoint_extra(preset)}
            parsed = default_sampling(info, predicts, ("ddim", 50))  # checks every entry
            assert (parsed.sampler, parsed.steps) == (preset.sampling["sampler"], preset.sampling["steps"]), preset.name
    mnist = get_preset("mnist").sampling
    assert mnist is not None and "mnist" in read_manifest()
    assert load_pretrained("mnist").info["sampling"] == mnist


def test_classifier_guidance_keeps_a_sampler_on_whole_steps(tmp_path, capsys) -> None:
    """mnist's own default (DPM-Solver++(2M) SDE) asks the model between whole steps, which classifier guidance
    cannot read: a guided call without a sampler takes DDIM with 50 steps (or the steps given), as before."""
    mnist = load_pipeline("mnist")
    own = get_preset("mnist").sampling
    assert mnist.sampler_and_steps() == (own["sampler"], own["steps"])
    assert mnist.sampler_and_steps(classifier_scale=4.0) == ("ddim", 50)
    assert mnist.sampler_and_steps(steps=3, classifier_scale=4.0) == ("ddim", 3)
    assert mnist.sampler_and_steps("ddpm", classifier_scale=4.0) == ("ddpm", 50)
    guided = generate("mnist", 2, class_label=7, classifier_scale=4.0, steps=2, seed=1)
    assert torch.equal(guided, generate("mnist", 2, class_label=7, classifier_scale=4.0, sampler="ddim", steps=2,
                                        seed=1))
    out = tmp_path / "seven.npz"
    assert main(["sample", "mnist", "--num", "1", "--class", "7", "--classifier-scale", "4", "--steps", "2",
                 "--out", str(out)]) == 0
    assert "ddim (the default for mnist with classifier guidance), 2 steps" in capsys.readouterr().out


def test_a_pipeline_classs_own_steps_hold_for_a_sampler_the_checkpoint_does_not_name(tmp_path) -> None:
    """A sampler other than the checkpoint's takes the pipeline class's steps (25 for the latent text-to-image
    pipelines), not the checkpoint's and not a fixed 50."""
    root = _save_uncond(tmp_path, "own", {"sampler": "dpmpp2m_sde", "steps": 3})

    class FewSteps(ImagePipeline):
        default_steps = 7

    pipeline = FewSteps(load_pretrained("own", root=root))
    assert pipeline.sampler_and_steps() == ("dpmpp2m_sde", 3)
    assert pipeline.sampler_and_steps("ddim") == ("ddim", 7)
    assert pipeline.sampler_and_steps(classifier_scale=2.0) == ("ddim", 7)
