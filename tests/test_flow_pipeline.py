"""A flow-matching checkpoint (chapter 09) behind the one registry: `load_pipeline`, `generate` and `python -m
diffusion_lab sample NAME --sampler euler|heun` follow its velocity; the samplers that read a noise prediction
are a clear error on it, and a velocity-only sampler would be one on a noise predictor. The `mnist_flow` preset
is the `mnist` recipe with the flow objective. Tiny untrained checkpoints in temporary folders: wiring and
errors, not image quality.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from exact_gaussian import CountCalls
from safetensors.torch import load_file
from tiny_flow_checkpoints import write_flow_and_eps

from diffusion_lab.cli.main import main
from diffusion_lab.cli.presets import build_objective, get_preset, noise_schedule
from diffusion_lab.flows import flow_euler, flow_heun
from diffusion_lab.models.unet import UNet
from diffusion_lab.pipelines import generate, load_pipeline
from diffusion_lab.pipelines import samplers as registry
from diffusion_lab.pipelines.flow import FlowImagePipeline
from diffusion_lab.pipelines.registry import PIPELINES
from diffusion_lab.pipelines.samplers import EPS, VELOCITY, Sampler, get_sampler, plan_sampler, samplers_for
from diffusion_lab.pretrained import load_pretrained, read_manifest
from diffusion_lab.sampling.scheduler import randn
from diffusion_lab.training import FlowMatchingObjective

ROOT = Path(__file__).resolve().parents[1]
EPS_ONLY = ["ddpm", "ddim", "dpmpp2m", "sde", "dpmpp2m_sde"]


@pytest.fixture(autouse=True)
def cpu_only(monkeypatch):
    monkeypatch.setenv("DIFFUSION_LAB_DEVICE", "cpu")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """flow: a tiny flow_unet (no schedule), uncond: a tiny eps U-Net, for the errors the other way round."""
    return write_flow_and_eps(tmp_path_factory.mktemp("checkpoints"), float16=True)


def one_line_error(fn, *args, **kwargs) -> str:
    with pytest.raises(ValueError) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_the_flow_kind_has_the_flow_pipeline(root) -> None:
    assert PIPELINES["flow_unet"] is FlowImagePipeline
    pipeline = load_pipeline("flow", root=root)
    assert isinstance(pipeline, FlowImagePipeline) and pipeline.predicts == VELOCITY
    assert pipeline.schedule is None and pipeline.sample_shape() == (1, 28, 28)
    assert json.loads((root / "flow.json").read_text())["schedule"] is None


@pytest.mark.parametrize("sampler, solver", [("euler", flow_euler), ("heun", flow_heun)])
def test_euler_and_heun_follow_the_velocity(root, sampler, solver) -> None:
    """The pipeline's samples are the flow solver's from the seed's x_T, clamped to the data's range."""
    x = generate("flow", 3, sampler=sampler, steps=4, seed=5, checkpoints_root=root)
    pre = load_pretrained("flow", root=root)
    x_T = randn((3, 1, 28, 28), torch.Generator().manual_seed(5), torch.float32, torch.device("cpu"))
    want = solver(pre.model, x_T, 4).clamp(-1, 1)
    assert x.shape == (3, 1, 28, 28) and torch.equal(x, want)
    assert x.abs().max() <= 1 and x.std() > 0
    assert torch.equal(x, generate("flow", 3, sampler=sampler, steps=4, seed=5, checkpoints_root=root))
    assert not torch.equal(x, generate("flow", 3, sampler=sampler, steps=4, seed=6, checkpoints_root=root))


@pytest.mark.parametrize("sampler", ["euler", "heun"])
@pytest.mark.parametrize("steps", [1, 5])
def test_the_registrys_count_is_the_flows_calls(sampler, steps) -> None:
    counted = CountCalls(lambda x, t: -x)
    run = plan_sampler(sampler, None, steps, predicts=VELOCITY)
    assert run(counted, torch.randn(2, 1, 4, 4)).shape == (2, 1, 4, 4)
    assert counted.calls == get_sampler(sampler).nfe(steps)


@pytest.mark.parametrize("sampler", EPS_ONLY)
def test_noise_samplers_on_a_flow_are_one_clear_line(root, sampler) -> None:
    message = one_line_error(generate, "flow", 2, sampler=sampler, steps=3, checkpoints_root=root)
    assert f"sampler '{sampler}' needs a model that predicts the noise eps" in message
    assert "this model predicts a flow's velocity (flow matching, chapter 09): use sampler='euler' or 'heun'" in message


def test_a_velocity_only_sampler_on_a_noise_predictor_is_one_clear_line(root, monkeypatch) -> None:
    """No shipped sampler is velocity-only (Euler and Heun fit both), but the registry checks both ways."""
    monkeypatch.setitem(registry.SAMPLERS, "flow_only", Sampler({VELOCITY: get_sampler("euler").plans[VELOCITY]},
                                                                lambda k: k, "a test's"))
    message = one_line_error(generate, "uncond", 2, sampler="flow_only", steps=3, checkpoints_root=root)
    assert "sampler 'flow_only' needs a model that predicts a flow's velocity (flow matching, chapter 09); " \
           "this model predicts the noise eps" in message
    assert samplers_for(VELOCITY) == ["euler", "heun", "flow_only"]
    assert generate("flow", 1, sampler="flow_only", steps=2, checkpoints_root=root).shape == (1, 1, 28, 28)


def test_other_flow_errors(root) -> None:
    assert "Drop eta (--eta)" in one_line_error(generate, "flow", 2, sampler="euler", eta=0.5, checkpoints_root=root)
    assert "ddim" not in one_line_error(generate, "flow", 2, sampler="heun", eta=0.5, checkpoints_root=root)
    assert "steps must be a positive int, got 0" in one_line_error(generate, "flow", 2, sampler="euler", steps=0,
                                                                   checkpoints_root=root)
    assert "flow does not take a class" in one_line_error(generate, "flow", 2, sampler="euler", class_label=3,
                                                          checkpoints_root=root)
    pipeline = load_pipeline("flow", root=root)
    assert "needs a model that predicts the noise eps" in one_line_error(pipeline.make_scheduler, "ddim", 5)
    assert "predicts must be one of eps, velocity" in one_line_error(plan_sampler, "euler", None, 3, predicts="v")
    assert samplers_for(EPS) == ["ddpm", "ddim", "euler", "heun", "dpmpp2m", "sde", "dpmpp2m_sde"]


def test_the_cli_samples_a_flow_and_counts_its_evaluations(root, tmp_path, capsys) -> None:
    out = tmp_path / "x.npz"
    assert main(["sample", "flow", "--num", "2", "--sampler", "heun", "--steps", "3", "--out", str(out),
                 "--checkpoint-dir", str(root)]) == 0
    assert "heun, 3 steps: 5 network evaluations per sample" in capsys.readouterr().out
    with np.load(out) as f:
        assert f["images"].shape == (2, 28, 28, 1) and f["images"].dtype == np.uint8
    bad = tmp_path / "bad.npz"
    assert main(["sample", "flow", "--num", "2", "--sampler", "ddpm", "--steps", "3", "--out", str(bad),
                 "--checkpoint-dir", str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: sampler 'ddpm' needs a model that predicts the noise eps")
    assert not bad.exists()


def test_mnist_flow_is_the_mnist_60k_recipe_with_the_flow_objective() -> None:
    flow, eps = get_preset("mnist_flow"), get_preset("mnist_60k")
    assert flow.kind == "flow_unet" and eps.kind == "unet"
    assert flow.model_config == eps.model_config == get_preset("mnist").model_config
    assert flow.train == eps.train and flow.data == eps.data == "mnist_full"
    assert flow.float16 and noise_schedule(flow) is None and noise_schedule(eps) is not None
    on_bundled = dataclasses.replace(flow, data="mnist")  # all 60,000 digits are a download; same form
    objective = build_objective(on_bundled, UNet(flow.model_config))
    assert isinstance(objective, FlowMatchingObjective) and not objective.ot
    assert objective.data.shape[1:] == (1, 28, 28)


def test_train_and_sample_a_tiny_flow_from_the_command_line(tmp_path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", DIFFUSION_LAB_DEVICE="cpu",
               PYTHONPATH=str(ROOT))

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "diffusion_lab", *map(str, args)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    result = cli("train", "--preset", "tiny_flow", "--steps", "3", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    info = json.loads((tmp_path / "tiny_flow.json").read_text())
    assert info["kind"] == "flow_unet" and info["schedule"] is None
    assert read_manifest(tmp_path)["tiny_flow"]["command"] == "python -m diffusion_lab train --preset tiny_flow --steps 3"
    weights = load_file(str(tmp_path / "tiny_flow.safetensors"))
    assert {v.dtype for v in weights.values() if v.is_floating_point()} == {torch.float16}
    result = cli("sample", "tiny_flow", "--num", "2", "--sampler", "euler", "--steps", "4", "--out", tmp_path / "s.npz",
                 "--checkpoint-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "euler, 4 steps: 4 network evaluations per sample" in result.stdout
