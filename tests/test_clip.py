"""The small CLIP of chapter 10: models/clip.py, training/contrastive.py, judges/clip_score.py and the presets
that train it. Untrained tiny models check shapes and arithmetic; a stub CLIP with known embeddings checks
the judges exactly; 30 steps of tiny training check that the contrastive loss falls."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from diffusion_lab.data.scenes import make_scenes, scene_vocabulary, swap_colours
from diffusion_lab.data.shapes import make_shapes
from diffusion_lab.judges.clip_score import (
    attribute_accuracy_of,
    binding_accuracy,
    clip_score,
    one_shape_captions,
    zero_shot_attributes,
)
from diffusion_lab.models.clip import CLIP, CLIPConfig
from diffusion_lab.models.text import Tokenizer
from diffusion_lab.pretrained import load_pretrained, save_pretrained
from diffusion_lab.training import (
    ContrastiveObjective,
    TrainConfig,
    contrastive_loss,
    fit,
    multi_positive_targets,
)

CAPTIONS = ["a red circle to the left of a blue square", "a small green cross in the centre",
            "a red circle to the left of a blue square", "a blue circle to the left of a red square",
            "a red circle to the left of a blue square"]


@pytest.fixture
def clip() -> CLIP:
    torch.manual_seed(0)
    return CLIP(CLIPConfig.tiny(scene_vocabulary())).eval()


def test_shapes_and_unit_norms(clip):
    images = torch.rand(5, 3, 16, 16) * 2 - 1
    ids = clip.tokenizer.encode(CAPTIONS)
    image_emb, text_emb = clip.encode_image(images), clip.encode_text(ids)
    assert image_emb.shape == text_emb.shape == (5, 16)
    assert torch.allclose(image_emb.norm(dim=1), torch.ones(5), atol=1e-6)
    assert torch.allclose(text_emb.norm(dim=1), torch.ones(5), atol=1e-6)
    logits = clip(images, ids[:3])  # (B_images, B_texts)
    assert logits.shape == (5, 3)
    assert torch.allclose(logits, clip.scale() * image_emb @ text_emb[:3].t(), atol=1e-5)
    assert torch.equal(text_emb[0], text_emb[2])  # the same caption, the same embedding
    assert not torch.allclose(text_emb[0], text_emb[3])  # colours swapped: a different caption


def test_position_survives_the_image_encoder(clip):
    """No global pooling: the same blob in two places gives two different embeddings."""
    left, right = torch.full((1, 3, 16, 16), -1.0), torch.full((1, 3, 16, 16), -1.0)
    left[..., 4:8, 2:6], right[..., 4:8, 10:14] = 1.0, 1.0
    assert (clip.encode_image(left) - clip.encode_image(right)).abs().max() > 1e-3


def test_temperature_starts_at_007_and_is_clamped_at_100(clip):
    assert clip.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    assert clip.scale().item() == pytest.approx(1 / 0.07, rel=1e-5)
    with torch.no_grad():
        clip.logit_scale.fill_(10.0)  # exp(10) = 22026
    assert clip.scale().item() == 100.0
    logits = clip(torch.rand(4, 3, 16, 16) * 2 - 1, clip.tokenizer.encode(CAPTIONS[:4]))
    assert logits.abs().max() <= 100.0 + 1e-4
    logits.sum().backward()
    assert clip.logit_scale.grad.item() == 0.0  # past the cap the temperature stops learning, as in CLIP


def test_multi_positive_targets_with_duplicates():
    ids = Tokenizer(scene_vocabulary()).encode(CAPTIONS)  # captions 0, 2 and 4 are the same
    targets = multi_positive_targets(ids)
    third = 1 / 3
    expected = torch.tensor([[third, 0, third, 0, third], [0, 1, 0, 0, 0], [third, 0, third, 0, third],
                             [0, 0, 0, 1, 0], [third, 0, third, 0, third]])
    assert torch.allclose(targets, expected)
    assert torch.allclose(targets.sum(dim=1), torch.ones(5))
    distinct = Tokenizer(scene_vocabulary()).encode(CAPTIONS[:2] + CAPTIONS[3:4])
    assert torch.equal(multi_positive_targets(distinct), torch.eye(3))


def test_contrastive_loss_is_clip_loss_when_captions_differ():
    torch.manual_seed(1)
    logits = torch.randn(6, 6) * 5
    labels = torch.arange(6)
    plain = (F.cross_entropy(logits, labels, reduction="none") + F.cross_entropy(logits.t(), labels, reduction="none")) / 2
    assert torch.allclose(contrastive_loss(logits, torch.eye(6)), plain, atol=1e-6)


def test_duplicates_are_not_pushed_apart():
    """Two copies of one caption and their two pictures: at a tie the multi-positive loss is at its minimum
    (zero gradient), while CLIP's identity targets would still push the copies apart."""
    logits = (10.0 * torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])).requires_grad_()
    targets = multi_positive_targets(torch.tensor([[1, 5, 0], [1, 5, 0], [1, 7, 0]]))
    loss = contrastive_loss(logits, targets)  # (3,)
    # by hand, row 0: -(1/2) log p(0) - (1/2) log p(1) with p = softmax(10, 10, 0)
    p = torch.softmax(torch.tensor([10.0, 10.0, 0.0]), dim=0)
    assert loss[0].item() == pytest.approx(-(0.5 * p[0].log() + 0.5 * p[1].log()).item(), rel=1e-5)
    loss.sum().backward()
    assert logits.grad[:2, :2].abs().max() < 1e-3
    logits_plain = logits.detach().clone().requires_grad_()
    contrastive_loss(logits_plain, torch.eye(3)).sum().backward()
    assert logits_plain.grad[0, 1] > 0.1  # identity targets push caption 1 away from picture 0


def test_loss_falls_over_30_steps_of_tiny_training():
    scenes = make_scenes(64, size=16, seed=0)
    torch.manual_seed(0)
    model = CLIP(CLIPConfig.tiny(scene_vocabulary()))
    objective = ContrastiveObjective(scenes.images, model.tokenizer.encode(scenes.captions))
    everything = {"images": objective.images, "ids": objective.ids}  # all 64 scenes contrasted at once

    def loss() -> float:
        with torch.no_grad():
            return objective.loss(model.eval(), everything).mean().item()

    before = loss()
    config = TrainConfig(steps=30, batch_size=16, lr=3e-3, warmup_steps=1, ema_decay=0.0, log_every=5)
    state = fit(model, objective, config, progress=False)
    assert loss() < 0.8 * before and state.history.losses[-1] < state.history.losses[0], state.history.losses


def test_objective_draws_a_seeded_batch_and_checks_its_data(clip):
    scenes = make_scenes(10, size=16, seed=0)
    ids = clip.tokenizer.encode(scenes.captions)
    objective = ContrastiveObjective(scenes.images, ids)
    config = TrainConfig(batch_size=8)
    a, b = (objective.draw(torch.Generator().manual_seed(3), config) for _ in range(2))
    assert a["images"].shape == (8, 3, 16, 16) and a["ids"].shape == (8, 12)
    assert torch.equal(a["images"], b["images"]) and torch.equal(a["ids"], b["ids"])
    assert objective.loss(clip, a).shape == (8,)
    with pytest.raises(ValueError, match="10 images but 9 captions"):
        ContrastiveObjective(scenes.images, ids[:9])
    with pytest.raises(TypeError, match="integer token ids"):
        ContrastiveObjective(scenes.images, ids.float())
    with pytest.raises(ValueError, match=r"scaled to \[-1, 1\]"):
        ContrastiveObjective(scenes.images * 3, ids)
    with pytest.raises(ValueError, match=r"shaped \(B, L\)"):
        multi_positive_targets(ids[0])


def test_config_round_trips_through_json_and_a_checkpoint(clip, tmp_path):
    config = clip.config
    assert CLIPConfig(**json.loads(json.dumps(dataclasses.asdict(config)))) == config
    save_pretrained("clip", clip, config, kind="clip", schedule=None, made_by={}, root=tmp_path)
    loaded = load_pretrained("clip", root=tmp_path)
    assert loaded.model.config == config and loaded.schedule is None and not loaded.model.training
    images, ids = torch.rand(3, 3, 16, 16) * 2 - 1, clip.tokenizer.encode(CAPTIONS[:3])
    assert torch.equal(loaded.model(images, ids), clip(images, ids))


def test_clear_errors(clip):
    with pytest.raises(ValueError, match=r"expects input shaped \(B, 3, 16, 16\), got \(2, 3, 32, 32\)"):
        clip.encode_image(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"ids must be \(B, 12\)"):
        clip.encode_text(torch.zeros(2, 14, dtype=torch.int64))
    with pytest.raises(ValueError, match="reads at most 11"):
        clip.tokenizer.encode("a red circle to the left of a blue square and a red square")
    with pytest.raises(ValueError, match="divisible by 8"):
        dataclasses.replace(clip.config, image_size=20)
    with pytest.raises(ValueError, match="num_groups"):
        dataclasses.replace(clip.config, width=12)
    with pytest.raises(ValueError, match="init_temperature"):
        dataclasses.replace(clip.config, init_temperature=5.0)
    with pytest.raises(TypeError, match="TextEncoderConfig"):
        CLIPConfig(text="words")
    with pytest.raises(TypeError, match="CLIPConfig"):
        CLIP(clip.config.text)


# ----- the judges ----------------------------------------------------------------------------------------

class StubCLIP(nn.Module):
    """A CLIP with known answers: text_emb is the one-hot spelling of the caption; picture i (its first pixel
    holds i / 1000) embeds exactly as ``captions[i]`` does."""

    def __init__(self, captions: list[str]) -> None:
        super().__init__()
        self.tokenizer = Tokenizer(scene_vocabulary())
        self.anchor = nn.Parameter(torch.zeros(1))  # where the judges look for the device
        self.table = self.encode_text(self.tokenizer.encode(captions))

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        return F.normalize(F.one_hot(ids, len(self.tokenizer)).flatten(1).float(), dim=1)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.table[(images[:, 0, 0, 0] * 1000).round().long()]


def indexed(images: torch.Tensor) -> torch.Tensor:
    images = images.clone()
    images[:, 0, 0, 0] = torch.arange(len(images)) / 1000
    return images


def test_zero_shot_reads_the_attributes_of_the_best_caption():
    shapes = make_shapes(30, size=16, seed=2, split="all")
    stub = StubCLIP(shapes.captions)
    predicted = zero_shot_attributes(stub, indexed(shapes.images))
    assert predicted.dtype == torch.int64 and torch.equal(predicted, shapes.attribute_indices)
    assert attribute_accuracy_of(predicted, shapes.attribute_indices) == {
        "shape": 1.0, "colour": 1.0, "size": 1.0, "position": 1.0, "all": 1.0}
    wrong = shapes.attribute_indices.clone()
    wrong[:10, 1] = (wrong[:10, 1] + 1) % 5  # a third of the colours wrong
    scores = attribute_accuracy_of(predicted, wrong)
    assert scores["colour"] == pytest.approx(2 / 3) and scores["all"] == pytest.approx(2 / 3)
    assert scores["shape"] == 1.0
    captions, indices = one_shape_captions()
    assert len(captions) == 250 and indices.shape == (250, 4)


def test_binding_accuracy_and_clip_score_exactly():
    scenes = make_scenes(40, size=16, seed=1, split="all", two_shape_fraction=0.75)
    images = indexed(scenes.images)
    right = StubCLIP(scenes.captions)
    assert torch.allclose(clip_score(right, images, scenes.captions), torch.ones(40))
    assert binding_accuracy(right, dataclasses.replace(scenes, images=images)) == 1.0
    swapped = [swap_colours(c) if len(s.objects) == 2 and s.objects[0].colour != s.objects[1].colour else c
               for c, s in zip(scenes.captions, scenes.scenes)]
    wrong = StubCLIP(swapped)  # every picture embeds as its colour-swapped caption
    assert binding_accuracy(wrong, dataclasses.replace(scenes, images=images)) == 0.0


def test_judges_on_an_untrained_clip(clip):
    clip.train()
    scenes = make_scenes(24, size=16, seed=5, split="all")
    attributes = zero_shot_attributes(clip, scenes.images)
    assert attributes.shape == (24, 4) and attributes.dtype == torch.int64
    assert (attributes >= 0).all() and (attributes.max(dim=0).values < torch.tensor([5, 5, 2, 5])).all()
    score = clip_score(clip, scenes.images, scenes.captions)
    assert score.shape == (24,) and (score.abs() <= 1 + 1e-6).all()
    by_hand = (clip.eval().encode_image(scenes.images) * clip.encode_text(clip.tokenizer.encode(scenes.captions))).sum(1)
    assert torch.allclose(score, by_hand.detach(), atol=1e-5)
    clip.train()
    assert 0.0 <= binding_accuracy(clip, scenes) <= 1.0
    assert clip.training  # the judges restore the mode they found
    with pytest.raises(ValueError, match="one caption per picture"):
        clip_score(clip, scenes.images, scenes.captions[:3])
    with pytest.raises(ValueError, match="no two-shape scene"):
        binding_accuracy(clip, make_scenes(4, size=16, two_shape_fraction=0.0))
    with pytest.raises(TypeError, match="SceneDataset"):
        binding_accuracy(clip, scenes.images)


# ----- the presets ---------------------------------------------------------------------------------------

def test_tiny_clip_preset_trains_and_loads(tmp_path):
    from diffusion_lab.cli.commands import train_command
    from diffusion_lab.cli.presets import get_preset, load_training_data

    preset = get_preset("clip_scenes")
    assert preset.kind == "clip" and preset.data == "scenes" and preset.train.batch_size >= 256
    assert preset.model_config.text.vocabulary == scene_vocabulary()
    images, ids = load_training_data(get_preset("tiny_clip"))
    assert images.shape == (256, 3, 16, 16) and ids.shape == (256, 12)
    path = train_command("tiny_clip", steps=4, out=tmp_path, progress=False)
    assert path == tmp_path / "tiny_clip.safetensors"
    loaded = load_pretrained("tiny_clip", root=tmp_path)
    assert isinstance(loaded.model, CLIP) and loaded.schedule is None and loaded.info["kind"] == "clip"
    emb = loaded.model.encode_text(loaded.model.tokenizer.encode(["a red circle above a blue square"]))
    assert emb.shape == (1, 16)
