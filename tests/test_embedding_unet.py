"""The unCLIP decoder (chapter 10): a U-Net that reads an image embedding through its time embedding and
through K context tokens; its null condition, guidance, training with condition dropout, checkpoints."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from fresh_weights import awake

from diffusion_lab.guidance import classifier_free_guidance
from diffusion_lab.models.embedding_unet import EmbeddingUNet, EmbeddingUNetConfig
from diffusion_lab.models.unet import UNet, UNetConfig
from diffusion_lab.pretrained import load_pretrained, model_kinds, save_pretrained
from diffusion_lab.schedules import NoiseSchedule
from diffusion_lab.training import DiffusionObjective, TrainConfig, fit

D = 16  # EmbeddingUNetConfig.tiny's embedding width




def unit(n: int, seed: int = 0, dim: int = D) -> torch.Tensor:
    return F.normalize(torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)), dim=1)


def inputs(B: int = 3, size: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(B, 3, size, size, generator=gen), torch.randint(1000, (B,), generator=gen)


@pytest.fixture(scope="module")
def model() -> EmbeddingUNet:
    torch.manual_seed(0)
    return awake(EmbeddingUNet(EmbeddingUNetConfig.tiny())).eval()


def test_shapes_and_presets(model):
    x, t = inputs()
    assert model(x, t, unit(3)).shape == (3, 3, 16, 16)
    assert model.tokens(unit(3)).shape == (3, 2, 16)  # K = 2 tokens of context_dim 16
    scenes = EmbeddingUNetConfig.scenes()
    assert (scenes.embed_dim, scenes.num_tokens, scenes.unet.image_size, scenes.unet.channels) == (64, 4, 32, (32, 64, 64))
    assert scenes.unet.cross_attention_resolutions == (16, 8) and scenes.unet.in_channels == 3
    big = EmbeddingUNet(scenes)
    x32, t32 = inputs(2, 32)
    assert big(x32, t32, unit(2, dim=64)).shape == (2, 3, 32, 32)
    assert big.embed_proj.out_features == scenes.unet.time_embed_dim == 128
    assert model_kinds()["embedding_unet"] == (EmbeddingUNet, EmbeddingUNetConfig)


def test_the_embedding_changes_the_output_and_none_is_the_zero_embedding(model):
    x, t = inputs()
    a, b = model(x, t, unit(3, 1)), model(x, t, unit(3, 2))
    assert (a - b).abs().max() > 1e-3
    null = model.null_condition(3)
    assert null.shape == (3, D) and null.dtype == torch.float32 and not null.any()
    assert torch.equal(model(x, t, None), model(x, t, null))
    assert not torch.allclose(model(x, t, None), a)
    # each sample reads its own embedding: changing sample 0's leaves samples 1 and 2 alone
    c = unit(3, 1)
    c2 = c.clone()
    c2[0] = unit(1, 9)[0]
    out, out2 = model(x, t, c), model(x, t, c2)
    assert not torch.allclose(out[0], out2[0]) and torch.allclose(out[1:], out2[1:], atol=1e-6)


@pytest.mark.parametrize("silenced", ["embed_proj", "token_proj"])
def test_both_paths_carry_the_embedding(silenced):
    """Through the time embedding alone, and through the context tokens alone, the embedding still matters."""
    torch.manual_seed(0)
    model = awake(EmbeddingUNet(EmbeddingUNetConfig.tiny())).eval()
    with torch.no_grad():
        getattr(model, silenced).weight.zero_()  # what is left of this path no longer depends on cond
    x, t = inputs()
    assert (model(x, t, unit(3, 1)) - model(x, t, unit(3, 2))).abs().max() > 1e-4


def test_gradient_reaches_both_projections(model):
    x, t = inputs()
    model.zero_grad()
    model(x, t, unit(3)).pow(2).mean().backward()
    for layer in (model.embed_proj, model.token_proj):
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    model.zero_grad()


def test_guidance_works_with_embeddings(model):
    x, t = inputs()
    cond, null = unit(3), model.null_condition(3)
    with torch.no_grad():
        eps_c, eps_0 = model(x, t, cond), model(x, t, null)
        assert torch.allclose(classifier_free_guidance(model, cond, null, 1.0)(x, t), eps_c, atol=1e-5)
        assert torch.allclose(classifier_free_guidance(model, cond, null, 0.0)(x, t), eps_0, atol=1e-5)
        guided = classifier_free_guidance(model, cond[:1], model.null_condition(1), 3.0)(x, t)  # one for all
        eps_c1 = model(x, t, cond[:1].expand(3, -1))
        assert torch.allclose(guided, eps_0 + 3.0 * (eps_c1 - eps_0), atol=1e-4)


def test_bad_conditions_are_clear_errors(model):
    x, t = inputs()
    with pytest.raises(ValueError, match=r"cond must be image embeddings shaped \(B, embed_dim\) = \(3, 16\)"):
        model(x, t, unit(3, dim=8))
    with pytest.raises(ValueError, match=r"\(3, 16\).*got \(2, 16\)"):
        model(x, t, unit(2))
    with pytest.raises(TypeError, match="float embeddings"):
        model(x, t, torch.zeros(3, D, dtype=torch.long))
    with pytest.raises(ValueError, match="extra_emb must be"):
        UNet(UNetConfig.tiny())(torch.randn(2, 1, 28, 28), torch.zeros(2, dtype=torch.long),
                                extra_emb=torch.zeros(2, 5))


def test_config_checks_and_json_round_trip():
    config = EmbeddingUNetConfig.tiny()
    again = EmbeddingUNetConfig(**json.loads(json.dumps(dataclasses.asdict(config))))
    assert again == config and isinstance(again.unet, UNetConfig)
    with pytest.raises(ValueError, match="context_dim=... and cross_attention_resolutions"):
        EmbeddingUNetConfig(UNetConfig.tiny())
    with pytest.raises(ValueError, match="num_classes=None"):
        EmbeddingUNetConfig(dataclasses.replace(config.unet, num_classes=3))
    with pytest.raises(ValueError, match="num_tokens must be a positive int"):
        EmbeddingUNetConfig(config.unet, num_tokens=0)
    with pytest.raises(TypeError, match="EmbeddingUNetConfig"):
        EmbeddingUNet(config.unet)


def test_checkpoint_round_trip(tmp_path, model):
    save_pretrained("decoder", model, model.config, kind="embedding_unet",
                    schedule=NoiseSchedule.from_name("cosine", 1000), made_by={}, root=tmp_path, float16=True)
    pre = load_pretrained("decoder", root=tmp_path)
    assert isinstance(pre.model, EmbeddingUNet) and pre.model.config == model.config and not pre.model.training
    x, t = inputs()
    with torch.no_grad():  # float16 storage: equal to the weights rounded to half precision
        assert torch.allclose(pre.model(x, t, unit(3)), model.half().float()(x, t, unit(3)), atol=1e-5)


def test_diffusion_objective_takes_float_embeddings():
    x0 = torch.zeros(4, 3, 16, 16)
    with pytest.raises(ValueError, match=r"floating point \(4, D\) \(embeddings\)"):
        DiffusionObjective(NoiseSchedule.from_name("cosine", 100), x0, torch.zeros(4))  # (N,) floats: not a kind
    with pytest.raises(ValueError, match="NaN or inf"):
        DiffusionObjective(NoiseSchedule.from_name("cosine", 100), x0, torch.full((4, D), float("nan")))
    with pytest.raises(ValueError, match=r"null_cond must have the shape of one condition, \(16,\)"):
        DiffusionObjective(NoiseSchedule.from_name("cosine", 100), x0, unit(4), torch.zeros(8))
    objective = DiffusionObjective(NoiseSchedule.from_name("cosine", 100), x0, unit(4), torch.zeros(D))
    assert objective.null_cond.dtype == torch.float32


@pytest.fixture(scope="module")
def trained():
    """A tiny decoder trained 120 steps (a few seconds) on four fixed random 8x8 patterns, each with its own
    unit embedding, 10 % of the embeddings dropped to zero."""
    size = 8  # the tiny U-Net runs at any size divisible by 4; 8x8 keeps the steps cheap
    patterns = torch.randint(0, 2, (4, 3, size, size), generator=torch.Generator().manual_seed(3)) * 2.0 - 1
    x0, embs = patterns.repeat(8, 1, 1, 1), unit(4, seed=5).repeat(8, 1)  # (32, 3, 8, 8), (32, 16)
    torch.manual_seed(0)
    model = EmbeddingUNet(EmbeddingUNetConfig.tiny())
    seen = []
    forward = model.forward
    model.forward = lambda x, t, c=None: seen.append(c.detach().clone()) or forward(x, t, c)
    config = TrainConfig(steps=120, batch_size=16, lr=3e-3, warmup_steps=10, ema_decay=0.0, cond_drop_prob=0.1,
                         log_every=10, checkpoint_every=1000)
    schedule = NoiseSchedule.from_name("cosine", 1000)
    threads = torch.get_num_threads()  # a module fixture runs before conftest's one_thread: one thread here too
    torch.set_num_threads(1)
    try:
        state = fit(model, DiffusionObjective(schedule, x0, embs, model.null_condition(1)[0]), config, progress=False)
    finally:
        torch.set_num_threads(threads)
    del model.forward
    return state, torch.cat(seen), x0, embs, schedule


def test_training_drops_embeddings_to_zero_and_the_loss_falls(trained):
    state, seen, _, embs, _ = trained
    dropped = ~seen.any(1)
    assert 0.04 < dropped.float().mean() < 0.2  # about 10 % of 120 x 16
    assert all(any(torch.equal(row, e) for e in embs[:4]) for row in seen[~dropped])
    losses = state.history.losses
    assert losses[-1] < 0.4 * losses[0], losses


def test_the_trained_decoder_uses_the_embedding(trained):
    """Once x_t hides much of the pattern, the right embedding predicts the noise better than another's."""
    state, _, x0, embs, schedule = trained
    model = state.ema.model
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    right = wrong = 0.0
    with torch.no_grad():
        for step in (500, 700, 850):
            t = torch.full((len(x0),), step)
            xt = schedule.add_noise(x0, eps, t)
            right += (model(xt, t, embs) - eps).pow(2).mean()
            wrong += (model(xt, t, embs.roll(1, 0)) - eps).pow(2).mean()  # each pattern given another's embedding
    assert right < 0.92 * wrong, (right, wrong)


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_trains_and_guides_on_a_device(device):
    """Under tests/fake_device.py: condition dropout's null embedding, made on the device, is drawn on the CPU;
    no float64 on MPS; at most one host-device read per log."""
    from fake_device import FakeDevice

    torch.manual_seed(0)
    model = EmbeddingUNet(EmbeddingUNetConfig.tiny())
    config = TrainConfig(steps=4, batch_size=4, warmup_steps=1, cond_drop_prob=0.5, log_every=2, checkpoint_every=100)
    with FakeDevice(device) as fd:
        model.to(device)
        objective = DiffusionObjective(NoiseSchedule.from_name("cosine", 100), torch.zeros(8, 3, 8, 8), unit(8),
                                       model.null_condition(1)[0])  # one read, to copy the null embedding
        before = fd.syncs
        state = fit(model, objective, config, device=torch.device(device), progress=False)
        guided = classifier_free_guidance(model, unit(1).to(device), model.null_condition(1), 3.0)
        x = torch.randn(2, 3, 8, 8).to(device)
        assert guided(x, torch.tensor([5, 50]).to(device)).device.type == device
    assert state.step == 4 and fd.syncs - before <= 2, fd.sync_sites
