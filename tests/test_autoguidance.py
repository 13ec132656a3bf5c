"""Autoguidance (Karras et al. 2024, chapter 09) and a checkpoint's own sigma_max: the shipped mnist samples with
DPM-Solver++(2M) SDE from sigma = 20, steered away from mnist_cond's unconditional branch. Tiny untrained
checkpoints for the wiring; the shipped mnist for what its JSON says."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch

from diffusion_lab.cli.main import main
from diffusion_lab.guidance import autoguidance, unconditional_branch
from diffusion_lab.models.unet import UNet, UNetConfig
from diffusion_lab.notation import sigma_to_t
from diffusion_lab.ode import karras_sigmas_for
from diffusion_lab.pipelines import generate, load_pipeline
from diffusion_lab.pipelines.samplers import plan_sampler
from diffusion_lab.pretrained import load_pretrained, save_pretrained
from diffusion_lab.sampling.scheduler import randn
from diffusion_lab.schedules import NoiseSchedule

OWN = {"sampler": "dpmpp2m_sde", "steps": 3, "sigma_max": 20.0, "guide": "weak", "guide_scale": 1.5}


@pytest.fixture(autouse=True)
def cpu_only(monkeypatch):
    monkeypatch.setenv("DIFFUSION_LAB_DEVICE", "cpu")


def _unet(seed: int, **config) -> UNet:
    torch.manual_seed(seed)
    model = UNet(dataclasses.replace(UNetConfig.tiny(), **config))
    with torch.no_grad():  # conv_out starts at zero: make the prediction depend on the weights
        model.conv_out.weight.normal_(0, 0.1)
    return model.eval()


def _save(folder: Path, name: str, model: UNet, sampling: dict | None = None, schedule: str = "cosine") -> None:
    save_pretrained(name, model, model.config, kind="unet", schedule=NoiseSchedule.from_name(schedule, 1000),
                    made_by={}, root=folder, extra={} if sampling is None else {"sampling": sampling})


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """good: a tiny eps U-Net whose JSON names OWN; weak: a class-conditional one, its guide; plain: no guide;
    odd: guided by a model on another schedule."""
    folder = tmp_path_factory.mktemp("checkpoints")
    _save(folder, "good", _unet(0), OWN)
    _save(folder, "weak", _unet(1, num_classes=10))
    _save(folder, "plain", _unet(0))
    _save(folder, "linear", _unet(2), schedule="linear")
    _save(folder, "odd", _unet(0), {**OWN, "guide": "linear"})
    _save(folder, "banded", _unet(0), {**OWN, "steps": 8, "guide_interval": [1.0, 5.0]})
    return folder


def _constant_pair(calls: list[str]):
    """A model predicting 3 and a guide predicting 1 everywhere, each noting its calls in ``calls``."""

    def model(x, t):
        calls.append("model")
        return torch.full_like(x, 3.0)

    def guide(x, t):
        calls.append("guide")
        return torch.full_like(x, 1.0)

    return model, guide


def test_autoguidance_mixes_the_two_predictions_and_calls_only_what_it_needs() -> None:
    calls = []
    model, guide = _constant_pair(calls)
    x, t = torch.zeros(2, 1, 4, 4), torch.tensor([5, 5])
    assert torch.equal(autoguidance(model, guide, 2.0)(x, t), torch.full_like(x, 5.0))  # 1 + 2 * (3 - 1)
    calls.clear()
    assert torch.equal(autoguidance(model, guide, 1.0)(x, t), torch.full_like(x, 3.0)) and calls == ["model"]
    calls.clear()
    assert torch.equal(autoguidance(model, guide, 0.0)(x, t), torch.full_like(x, 1.0)) and calls == ["guide"]
    with pytest.raises(ValueError, match="autoguidance_scale must be >= 0"):
        autoguidance(model, guide, -1.0)


def test_an_interval_guides_only_the_steps_whose_sigma_lies_in_it() -> None:
    schedule = NoiseSchedule.from_name("cosine", 1000)
    calls = []
    model, guide = _constant_pair(calls)
    guided = autoguidance(model, guide, 2.0, schedule=schedule, sigma_interval=(1.0, 5.0))
    x = torch.zeros(2, 1, 4, 4)
    for sigma, expected, called in ((20.0, 3.0, ["model"]), (2.0, 5.0, ["guide", "model"]), (0.1, 3.0, ["model"])):
        calls.clear()
        t = sigma_to_t(schedule, torch.full((2,), sigma)).float()
        assert torch.equal(guided(x, t), torch.full_like(x, expected)) and calls == called, sigma
    t = sigma_to_t(schedule, torch.tensor([2.0, 20.0])).float()  # one sample inside, one outside
    assert guided(x, t)[:, 0, 0, 0].tolist() == [5.0, 3.0]
    for interval, message in (((5.0, 1.0), "0 <= lo < hi"), ((1.0,), "two noise levels"), ("1,5", "(lo, hi)")):
        with pytest.raises(ValueError, match=re.escape(message)):
            autoguidance(model, guide, 2.0, schedule=schedule, sigma_interval=interval)
    with pytest.raises(ValueError, match="needs the schedule"):
        autoguidance(model, guide, 2.0, sigma_interval=(1.0, 5.0))


def test_the_unconditional_branch_reads_the_null_class_for_every_sample() -> None:
    weak = _unet(1, num_classes=10)
    x, t = torch.randn(3, 1, 28, 28), torch.tensor([10, 500, 900])
    with torch.no_grad():
        assert torch.equal(unconditional_branch(weak, weak.null_condition(1))(x, t), weak(x, t, weak.null_condition(3)))
    with pytest.raises(ValueError, match="null_cond must be one condition"):
        unconditional_branch(weak, weak.null_condition(2))


def test_the_checkpoints_own_sampler_is_autoguided_from_its_sigma_max(root) -> None:
    pipeline = load_pipeline("good", root=root)
    drawn = pipeline(2, seed=5)
    good, weak = load_pretrained("good", root=root), load_pretrained("weak", root=root)
    guided = autoguidance(good.model, unconditional_branch(weak.model, weak.model.null_condition(1)), 1.5)
    run = plan_sampler("dpmpp2m_sde", good.schedule, 3, sigma_max=20.0)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        by_hand = run(guided, randn((2, 1, 28, 28), generator, torch.float32, torch.device("cpu")),
                      generator=generator)
    assert torch.allclose(drawn, by_hand, atol=1e-6)
    assert pipeline.nfe() == 6 and pipeline.nfe(steps=5) == 10 and pipeline.nfe(autoguidance_scale=1.0) == 3
    assert pipeline.nfe("dpmpp2m_sde", 3) == 3 and pipeline.nfe("ddim", 3, autoguidance_scale=2.0) == 6


def test_autoguidance_scale_1_turns_it_off_and_a_named_sampler_samples_as_on_any_model(root) -> None:
    pipeline, plain = load_pipeline("good", root=root), load_pipeline("plain", root=root)
    off = pipeline(2, seed=5, autoguidance_scale=1.0)
    assert not torch.equal(off, pipeline(2, seed=5))
    run = plan_sampler("dpmpp2m_sde", plain.schedule, 3, sigma_max=20.0)  # its sigma_max stays with its sampler
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        by_hand = run(plain.model, randn((2, 1, 28, 28), generator, torch.float32, torch.device("cpu")),
                      generator=generator)
    assert torch.allclose(off, by_hand, atol=1e-6)
    # a named sampler, its own too: no guidance, sigma_max 80, as the same weights without a "sampling" entry
    for sampler in ("dpmpp2m_sde", "dpmpp2m", "ddim"):
        assert torch.equal(pipeline(2, sampler=sampler, steps=3, seed=5), plain(2, sampler=sampler, steps=3, seed=5))
    assert not torch.equal(pipeline(2, sampler="dpmpp2m", steps=3, seed=5),
                           pipeline(2, sampler="dpmpp2m", steps=3, seed=5, autoguidance_scale=1.5))


@pytest.mark.parametrize("kwargs, message", [
    ({"autoguidance_scale": -1.0}, "autoguidance_scale must be >= 0"),
    ({"autoguidance_scale": "1.5"}, "autoguidance_scale must be a finite number"),
    ({"class_label": 3, "classifier_scale": 2.0, "autoguidance_scale": 1.5, "classifier": "weak"},
     "classifier guidance and autoguidance are one or the other"),
])
def test_wrong_autoguidance_is_a_clear_error(root, kwargs, message) -> None:
    with pytest.raises((ValueError, TypeError), match=re.escape(message)):
        load_pipeline("good", root=root)(1, steps=1, **kwargs)


def test_a_model_without_a_guide_or_with_an_unfit_one(root) -> None:
    with pytest.raises(ValueError, match="plain names no guide in its JSON"):
        load_pipeline("plain", root=root)(1, steps=1, autoguidance_scale=2.0)
    with pytest.raises(ValueError, match="odd's guide linear must predict the noise of the same images on the same"):
        load_pipeline("odd", root=root)(1, steps=1)
    with pytest.raises(ValueError, match="mnist_cond is not autoguided"):
        generate("mnist_cond", 1, class_label=3, steps=1, autoguidance_scale=1.5)


def test_a_pipeline_that_cannot_be_autoguided_refuses_a_guide_in_its_json(tmp_path) -> None:
    weak = _unet(1, num_classes=10)
    _save(tmp_path, "cond", weak, {"sampler": "ddim", "steps": 3, "guide": "weak"})
    with pytest.raises(ValueError, match="cond.json's \"sampling\" entry names a guide, but ClassConditionalPipeline"):
        load_pipeline("cond", root=tmp_path)


def test_a_recipe_with_an_interval_counts_the_guides_evaluations_before_sampling(root) -> None:
    pipeline = load_pipeline("banded", root=root)
    counted = []
    guide = pipeline.guide()
    pipeline._guide = lambda x, t: counted.append(1) or guide(x, t)
    pipeline(2, seed=1)
    sigmas = karras_sigmas_for(pipeline.schedule, 8, sigma_max=20.0)[:-1]
    inside = int(((sigmas >= 1) & (sigmas <= 5)).sum())
    assert 0 < inside < 8 and len(counted) == inside and pipeline.nfe() == 8 + inside
    assert pipeline.nfe(autoguidance_scale=1.0) == 8 and pipeline.nfe(autoguidance_scale=3.0) == 8 + inside
    assert pipeline.nfe("dpmpp2m", 8, autoguidance_scale=2.0) == 16  # a named sampler: every step, at sigma <= 80
    assert pipeline.nfe("dpmpp2m", 8, autoguidance_scale=2.0, autoguidance_interval=(1, 5)) == 8 + int(
        ((karras_sigmas_for(pipeline.schedule, 8)[:-1] - 3).abs() <= 2).sum())
    with pytest.raises(ValueError, match="needs one of euler, dpmpp2m, sde, dpmpp2m_sde; 'heun' does not step once"):
        pipeline(1, sampler="heun", steps=2, autoguidance_scale=2.0, autoguidance_interval=(1, 5))
    with pytest.raises(ValueError, match="give autoguidance_scale too"):
        pipeline(1, sampler="ddim", steps=2, autoguidance_interval=(1, 5))


@pytest.mark.parametrize("entry, message", [
    ({**OWN, "guide_interval": [5, 1]}, "guide_interval must be two noise levels (lo, hi) with 0 <= lo < hi"),
    ({**OWN, "guide_interval": 3}, "guide_interval must be two noise levels"),
    ({**OWN, "sampler": "heun", "guide_interval": [1, 5]}, "'heun' does not step once per noise level"),
    ({"sampler": "ddim", "steps": 3, "guide_interval": [1, 5]}, "gives guide_scale or guide_interval but no guide"),
])
def test_a_wrong_interval_in_the_json_is_a_clear_error_when_loading(tmp_path, entry, message) -> None:
    _save(tmp_path, "own", _unet(0), entry)
    with pytest.raises(ValueError, match=re.escape(message)):
        load_pipeline("own", root=tmp_path)


def test_the_cli_counts_both_networks(root, tmp_path, capsys) -> None:
    out = str(tmp_path / "x.npz")
    assert main(["sample", "good", "--num", "1", "--out", out, "--checkpoint-dir", str(root)]) == 0
    assert ("dpmpp2m_sde (the default for good), 3 steps: 6 network evaluations per sample (3 of good and 3 of its "
            "guide weak)") in capsys.readouterr().out
    assert main(["sample", "good", "--num", "1", "--autoguidance-scale", "1", "--out", out,
                 "--checkpoint-dir", str(root)]) == 0
    assert "3 steps: 3 network evaluations per sample\n" in capsys.readouterr().out


def test_the_shipped_mnist_is_autoguided_by_mnist_cond_from_sigma_20() -> None:
    mnist = load_pipeline("mnist")
    assert (mnist.sampling.sigma_max, mnist.sampling.guide) == (20.0, "mnist_cond")
    assert mnist.nfe() <= 50 and mnist.nfe() > mnist.sampling.steps  # the guide's evaluations count
    assert mnist.resolve(None, None, {"class_label": 7, "classifier_scale": 4.0}) == (
        "ddim", 50, {"class_label": 7, "classifier_scale": 4.0}, None)  # unguided DDIM from t = 999
