"""The DALL·E 2 priors (chapter 10): the diffusion prior over CLIP image embeddings and the regression baseline,
their embedding scale, objectives, sampling through chapter 05's loop, and checkpoints."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from diffusion_lab.models.prior import DiffusionPrior, EmbeddingScale, PriorConfig
from diffusion_lab.models.regression_prior import RegressionPrior, RegressionPriorConfig
from diffusion_lab.notation import eps_to_x0
from diffusion_lab.pipelines.prior import (
    as_eps_model,
    predict_image_embeddings,
    sample_image_embeddings,
    sample_prior,
)
from diffusion_lab.pretrained import load_pretrained, model_kinds, save_pretrained
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.training import PriorObjective, RegressionPriorObjective, TrainConfig, fit, prior_loss

D = 64
COSINE = NoiseSchedule.from_name("cosine", 1000)


def unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1)


def cone(n: int, seed: int = 0) -> torch.Tensor:
    """Unit vectors around a common direction, as CLIP's image embeddings of one domain are (N, D)."""
    g = torch.Generator().manual_seed(seed)
    return unit(3 * unit(torch.ones(D)) + torch.randn(n, D, generator=g) * torch.linspace(0.02, 0.2, D))


def measured_prior(config: PriorConfig | None = None, seed: int = 0) -> DiffusionPrior:
    torch.manual_seed(seed)
    prior = DiffusionPrior(config or PriorConfig.tiny())
    with torch.no_grad():  # the output layer starts at zero: give the network a say
        prior.out[1].weight.normal_(0, 0.1)
    prior.embedding_scale.measure(cone(200))
    return prior.eval()


# ----- the networks -----------------------------------------------------------------------------------------


def test_prior_is_called_like_every_denoiser_and_returns_x0():
    prior = measured_prior()
    xt, t, cond = torch.randn(5, D), torch.randint(0, 1000, (5,)), unit(torch.randn(5, D))
    x0 = prior(xt, t, cond)
    assert x0.shape == (5, D)
    assert torch.equal(prior(xt, t, None), prior(xt, t, prior.null_condition(5)))  # None is ∅
    assert not torch.allclose(prior(xt, t, None), x0)  # the text is read
    assert torch.allclose(prior(xt, t.double(), cond), x0, atol=1e-5)  # chapter 09's fractional t: same at whole steps


def test_fresh_prior_guesses_alpha_t_times_xt():
    """v = 0 at first, so x_0 = alpha_t x_t: the best guess for unit-variance data (EDM's c_skip)."""
    prior = DiffusionPrior(PriorConfig.tiny())
    xt, t = torch.randn(4, D), torch.tensor([0, 10, 500, 999])
    expected = COSINE.alpha_bars[t].sqrt()[:, None] * xt
    assert torch.allclose(prior(xt, t, unit(torch.randn(4, D))), expected, atol=1e-6)


def test_eps_model_is_the_x0_guess_written_as_noise():
    prior = measured_prior()
    xt, t, cond = torch.randn(6, D), torch.randint(0, 1000, (6,)), unit(torch.randn(6, D))
    eps = as_eps_model(prior)(xt, t, cond)
    abar = COSINE.alpha_bars[t][:, None]
    assert torch.allclose(eps, (xt - abar.sqrt() * prior(xt, t, cond)) / (1 - abar).sqrt(), atol=1e-5)
    assert torch.allclose(eps_to_x0(xt, eps, abar.sqrt()[:, 0], (1 - abar).sqrt()[:, 0]), prior(xt, t, cond), atol=1e-5)


def test_null_condition_is_zeros_that_no_caption_embeds_to():
    prior = DiffusionPrior(PriorConfig.tiny())
    null = prior.null_condition(3)
    assert null.shape == (3, D) and torch.equal(null, torch.zeros(3, D))


def test_regression_prior_is_deterministic_per_caption():
    prior = RegressionPrior(RegressionPriorConfig.tiny())
    text = unit(torch.randn(3, D))
    assert prior(text).shape == (3, D) and torch.equal(prior(text), prior(text))


@pytest.mark.parametrize("make", [lambda: DiffusionPrior(PriorConfig.tiny()),
                                  lambda: RegressionPrior(RegressionPriorConfig.tiny())])
def test_priors_reject_wrong_shapes(make):
    prior = make()
    call = (lambda x: prior(x, torch.zeros(len(x), dtype=torch.long))) if isinstance(prior, DiffusionPrior) else prior
    with pytest.raises(ValueError, match=r"\(B, 64\)"):
        call(torch.randn(2, 32))  # wrong D
    with pytest.raises(ValueError, match=r"\(B, 64\)"):
        call(torch.randn(D))  # one embedding without its batch dimension


def test_prior_rejects_bad_conditions_and_configs():
    prior = DiffusionPrior(PriorConfig.tiny())
    xt, t = torch.randn(2, D), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"cond must be shaped \(B, 64\)"):
        prior(xt, t, torch.randn(2, 16))
    with pytest.raises(ValueError, match="one per sample"):
        prior(xt, t, unit(torch.randn(3, D)))
    with pytest.raises(ValueError, match="0..999"):
        prior(xt, torch.tensor([0, 1000]))
    with pytest.raises(ValueError, match="embed_dim"):
        PriorConfig(embed_dim=0)
    with pytest.raises(ValueError, match="schedule must be one of"):
        PriorConfig(schedule="fancy")


# ----- the embedding scale ----------------------------------------------------------------------------------


def test_normalised_training_embeddings_have_unit_std_per_dimension():
    image_emb = cone(500)
    assert image_emb.std(0).min() < 0.05 and image_emb.mean(0).norm() > 0.8  # CLIP-like: small and off-centre
    objective = PriorObjective(unit(torch.randn(500, D)), image_emb, COSINE)
    assert torch.allclose(objective.x0.std(0), torch.ones(D), atol=1e-4)
    assert torch.allclose(objective.x0.mean(0), torch.zeros(D), atol=1e-4)


def test_scale_round_trip_and_unmeasured_scale():
    scale = EmbeddingScale(D)
    with pytest.raises(ValueError, match="never measured"):
        scale.normalise(cone(4))
    image_emb = cone(300)
    scale.measure(image_emb)
    assert torch.allclose(scale.denormalise(scale.normalise(image_emb)), image_emb, atol=1e-6)
    assert set(scale.state_dict()) == {"mean", "std"}  # buffers: saved with the weights
    with pytest.raises(ValueError, match="many finite embeddings"):
        EmbeddingScale(D).measure(cone(1))


def test_finish_stores_the_scale_in_the_model():
    objective = RegressionPriorObjective(unit(torch.randn(100, D)), cone(100))
    prior = RegressionPrior(RegressionPriorConfig.tiny())
    summary = objective.finish(prior)
    assert torch.equal(prior.embedding_scale.std, objective.scale.std)
    assert summary["embedding_scale"]["std_min"] == pytest.approx(float(objective.scale.std.min()))


# ----- the objectives ---------------------------------------------------------------------------------------


def test_prior_loss_is_the_x0_error_per_sample():
    x0, eps = torch.randn(4, D), torch.randn(4, D)
    t = torch.tensor([0, 100, 500, 999])
    loss = prior_loss(lambda xt, t, cond: torch.zeros_like(xt), COSINE, x0, t, eps)
    assert loss.shape == (4,) and torch.allclose(loss, x0.pow(2).mean(1))  # guessing 0 costs |x_0|^2 / D
    assert torch.equal(prior_loss(lambda xt, t, cond: x0, COSINE, x0, t, eps), torch.zeros(4))
    assert prior_loss(lambda xt, t, cond: eps, COSINE, x0, t, eps).min() > 0.5  # the noise is not the target


def test_cond_dropout_rate_and_determinism():
    text = unit(torch.randn(50, D))
    objective = PriorObjective(text, cone(50), COSINE)  # cond_drop_prob 0.1
    config = TrainConfig(batch_size=4000)
    batch = objective.draw(torch.Generator().manual_seed(0), config)
    dropped = (batch["cond"] == 0).all(1)
    assert 0.09 < float(dropped.float().mean()) < 0.11  # 10 % of 4000: 400 +- 19
    assert torch.allclose(batch["cond"][~dropped].norm(dim=1), torch.ones(int((~dropped).sum())))
    again = objective.draw(torch.Generator().manual_seed(0), config)
    assert all(torch.equal(batch[k], again[k]) for k in batch)
    other = objective.draw(torch.Generator().manual_seed(1), config)
    assert not torch.equal(batch["eps"], other["eps"])
    kept = PriorObjective(text, cone(50), COSINE, cond_drop_prob=0.0).draw(torch.Generator(), config)
    assert not (kept["cond"] == 0).all(1).any()


def test_objectives_reject_bad_data():
    with pytest.raises(ValueError, match="L2-normalised"):
        PriorObjective(torch.randn(10, D), cone(10), COSINE)
    with pytest.raises(ValueError, match="one text embedding per image embedding"):
        PriorObjective(unit(torch.randn(9, D)), cone(10), COSINE)
    with pytest.raises(ValueError, match=r"\(B, 64\)"):
        PriorObjective(unit(torch.randn(D)), cone(10), COSINE)
    with pytest.raises(TypeError, match="NoiseSchedule"):
        PriorObjective(unit(torch.randn(10, D)), cone(10), "cosine")
    objective = PriorObjective(unit(torch.randn(10, D)), cone(10), COSINE)
    with pytest.raises(ValueError, match="set it in one place"):
        objective.draw(torch.Generator(), TrainConfig(batch_size=4, cond_drop_prob=0.2))
    linear = PriorObjective(unit(torch.randn(10, D)), cone(10), NoiseSchedule.from_name("linear", 1000))
    batch = linear.draw(torch.Generator(), TrainConfig(batch_size=4))
    with pytest.raises(ValueError, match="pass schedule=prior.schedule"):
        linear.loss(DiffusionPrior(PriorConfig.tiny()), batch)


# ----- sampling ---------------------------------------------------------------------------------------------


def test_sampling_is_repeatable_and_checks_its_arguments():
    prior = measured_prior().train()
    text = unit(torch.randn(3, D))
    a = sample_image_embeddings(prior, text, steps=8, generator=torch.Generator().manual_seed(0))
    b = sample_image_embeddings(prior, text, steps=8, generator=torch.Generator().manual_seed(0))
    c = sample_image_embeddings(prior, text, steps=8, generator=torch.Generator().manual_seed(1))
    assert a.shape == (3, D) and torch.equal(a, b) and not torch.allclose(a, c)
    assert torch.allclose(a.norm(dim=1), torch.ones(3), atol=1e-5)  # CLIP's unit vectors
    assert prior.training  # sampled in eval mode, its mode restored
    with pytest.raises(ValueError, match="guidance_scale must be >= 0"):
        sample_image_embeddings(prior, text, guidance_scale=-1.0)
    with pytest.raises(ValueError, match="L2-normalised"):
        sample_image_embeddings(prior, 3 * text)
    with pytest.raises(ValueError, match=r"\(B, 64\)"):
        sample_image_embeddings(prior, text[0])
    with pytest.raises(ValueError, match="never measured"):
        sample_image_embeddings(DiffusionPrior(PriorConfig.tiny()), text)


def test_guidance_scale_zero_ignores_the_caption():
    """Classifier-free guidance from chapter 07 wraps the prior: at w = 0 only ∅ is read."""
    prior = measured_prior()
    first, second = unit(torch.randn(2, D)), unit(torch.randn(2, D))
    run = lambda text, w: sample_prior(prior, text, steps=8, guidance_scale=w,  # noqa: E731
                                       generator=torch.Generator().manual_seed(0))
    assert torch.allclose(run(first, 0.0), run(second, 0.0))
    assert not torch.allclose(run(first, 1.0), run(second, 1.0))


# ----- learning: a toy whose image embeddings are a rotation of the text embeddings, plus noise -----------------


def rotation_toy(n_captions: int = 20, per_caption: int = 50, noise: float = 0.5):
    """(text (C, D), caption of each pair (N,), image_emb (N, D)): image_emb = unit(R text + noise)."""
    g = torch.Generator().manual_seed(0)
    text = unit(torch.randn(n_captions, D, generator=g))
    rotation, _ = torch.linalg.qr(torch.randn(D, D, generator=g))
    caption = torch.arange(n_captions).repeat_interleave(per_caption)
    image_emb = unit(text[caption] @ rotation.T + noise * torch.randn(len(caption), D, generator=g) / D**0.5)
    return text, caption, image_emb


@pytest.fixture(scope="module")
def trained():
    text, caption, image_emb = rotation_toy()
    config = TrainConfig(steps=400, batch_size=128, lr=3e-3, warmup_steps=20, ema_decay=0.0, log_every=400)
    models = {}
    torch.set_num_threads(1)  # the autouse fixture is function-scoped
    for model, objective in [(DiffusionPrior(PriorConfig.tiny()), PriorObjective(text[caption], image_emb, COSINE)),
                             (RegressionPrior(RegressionPriorConfig.tiny()),
                              RegressionPriorObjective(text[caption], image_emb))]:
        torch.manual_seed(0)
        fit(model, objective, config, progress=False)
        objective.finish(model)
        models[type(model).__name__] = model
    targets = unit(torch.stack([image_emb[caption == c].mean(0) for c in range(len(text))]))  # (C, D)
    spread = torch.stack([image_emb[caption == c].std(0).norm() for c in range(len(text))]).mean()
    return models, text, targets, float(spread)


def test_both_priors_land_nearest_their_own_caption(trained):
    models, text, targets, _ = trained
    queries = text.repeat_interleave(8, 0)  # 8 samples of each of the 20 captions
    truth = torch.arange(len(text)).repeat_interleave(8)
    for out in (sample_image_embeddings(models["DiffusionPrior"], queries, generator=torch.Generator().manual_seed(0)),
                predict_image_embeddings(models["RegressionPrior"], queries)):
        cos = out @ targets.T  # (160, 20)
        assert (cos.argmax(1) == truth).float().mean() >= 0.95
        assert cos[torch.arange(len(truth)), truth].mean() > cos.mean() + 0.5


def test_diffusion_prior_samples_spread_and_regression_prior_collapses_to_the_mean(trained):
    models, text, targets, true_spread = trained
    queries = text[:5].repeat_interleave(16, 0)
    samples = sample_image_embeddings(models["DiffusionPrior"], queries, generator=torch.Generator().manual_seed(0))
    spread = samples.view(5, 16, D).std(1).norm(dim=-1).mean()
    assert 0.5 * true_spread < spread < 2 * true_spread
    regression = models["RegressionPrior"]
    answers = predict_image_embeddings(regression, queries).view(5, 16, D)
    assert float(answers.std(1).max()) == 0.0  # one answer per caption
    assert (answers[:, 0] * targets[:5]).sum(1).min() > 0.99  # ... the direction of the mean of its targets
    with torch.no_grad():  # and before re-normalising, shorter than any target: the mean of spread-out unit vectors
        raw = regression.embedding_scale.denormalise(regression(text[:5])).norm(dim=1)
    assert raw.max() < 0.95


def test_samples_come_back_in_clip_units(trained):
    prior = trained[0]["DiffusionPrior"]
    x0 = sample_prior(prior, trained[1][:4].repeat(8, 1), generator=torch.Generator().manual_seed(0))
    assert 6 < float(x0.norm(dim=1).mean()) < 10  # the diffusion's units: unit std per dimension, norm ~ sqrt(64)
    norms = prior.embedding_scale.denormalise(x0).norm(dim=1)
    assert abs(float(norms.mean()) - 1) < 0.25  # CLIP's units; the pipeline re-normalises to exactly 1


# ----- checkpoints ------------------------------------------------------------------------------------------


def test_model_kinds_name_both_priors():
    assert model_kinds()["prior"] == (DiffusionPrior, PriorConfig)
    assert model_kinds()["regression_prior"] == (RegressionPrior, RegressionPriorConfig)


@pytest.mark.parametrize("float16", [False, True])
def test_checkpoints_keep_the_measured_scale(tmp_path, float16):
    prior = measured_prior(dataclasses.replace(PriorConfig.tiny(), schedule="linear", T=500))
    regression = RegressionPrior(RegressionPriorConfig.tiny())
    regression.embedding_scale.measure(cone(100, seed=1))
    save_pretrained("p", prior, prior.config, kind="prior", schedule=prior.schedule, made_by={}, root=tmp_path,
                    float16=float16)
    save_pretrained("r", regression, regression.config, kind="regression_prior", schedule=None, made_by={},
                    root=tmp_path, float16=float16)
    p, r = load_pretrained("p", root=tmp_path), load_pretrained("r", root=tmp_path)
    assert p.model.config == prior.config and p.model.schedule.name == "linear" and p.schedule.T == 500
    for loaded, original in ((p.model, prior), (r.model, regression)):
        assert torch.equal(loaded.embedding_scale.mean, original.embedding_scale.mean)  # buffers stay float32
        assert torch.equal(loaded.embedding_scale.std, original.embedding_scale.std)
    text = unit(torch.randn(2, D))
    tol = 1e-2 if float16 else 0
    a = sample_image_embeddings(prior, text, steps=4, generator=torch.Generator().manual_seed(0))
    b = sample_image_embeddings(p.model, text, steps=4, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(a, b, atol=tol)
    assert torch.allclose(predict_image_embeddings(regression, text), predict_image_embeddings(r.model, text), atol=tol)


# ----- on a GPU: tests/fake_device.py's stand-in fails on what CUDA or MPS would refuse --------------------------


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_priors_train_and_sample_on_a_device(device):
    from fake_device import FakeDevice

    text, image_emb = unit(torch.randn(64, D)), cone(64)
    config = TrainConfig(steps=4, batch_size=8, log_every=2, checkpoint_every=100, warmup_steps=1)
    trained = []
    with FakeDevice(device) as fd:
        for model, objective in ((DiffusionPrior(PriorConfig.tiny()), PriorObjective(text, image_emb, COSINE)),
                                 (RegressionPrior(RegressionPriorConfig.tiny()),
                                  RegressionPriorObjective(text, image_emb))):
            state = fit(model, objective, config, device=torch.device(device), progress=False)
            objective.finish(state.ema.model)  # the copy that is sampled and saved
            trained.append(state.ema.model)
        assert fd.syncs <= 4, f"{fd.syncs} host-device syncs in two runs of 4 steps: {fd.sync_sites}"
        prior, regression = trained
        before = fd.syncs
        x0 = sample_image_embeddings(prior, text[:3].to(device), steps=8,
                                     guidance_scale=3.0, generator=torch.Generator().manual_seed(0))
        assert x0.device.type == device and fd.syncs - before <= 4  # the checks' reads, none per step
        assert predict_image_embeddings(regression, text[:3].to(device)).device.type == device
        fractional = prior(torch.randn(2, D, device=device), torch.tensor([10.5, 900.0], device=device))
        assert fractional.device.type == device  # chapter 09's solvers ask between whole steps
