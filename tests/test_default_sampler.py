"""Each pipeline samples with its own default sampler (chapter 09): DDIM for the noise predictors, Euler for a
flow, so `generate(name, N)` and `python -m diffusion_lab sample NAME` work on every model without --sampler,
and say which sampler they used. Tiny untrained checkpoints: wiring, not image quality."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_flow_checkpoints import write_flow_and_eps

from diffusion_lab.cli.main import main
from diffusion_lab.pipelines import generate, load_pipeline
from diffusion_lab.pipelines.base import DiffusionPipeline
from diffusion_lab.pipelines.class_conditional import ClassConditionalPipeline
from diffusion_lab.pipelines.flow import FlowImagePipeline
from diffusion_lab.pipelines.latent import LatentImagePipeline
from diffusion_lab.pipelines.samplers import check_fits
from diffusion_lab.pipelines.text_conditional import TextConditionalPipeline
from diffusion_lab.pipelines.unconditional import ImagePipeline, PointsPipeline

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
