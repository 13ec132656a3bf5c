"""AttributeScorer: output shapes, clear errors, and a short training that learns the shapes data set."""

import dataclasses

import pytest
import torch

from diffusion_lab.data.shapes import COLOURS, POSITIONS, SHAPES, SIZES, make_shapes
from diffusion_lab.judges.attribute_scorer import (
    ATTRIBUTE_NAMES,
    ATTRIBUTE_SIZES,
    AttributeScorer,
    AttributeScorerConfig,
)
from diffusion_lab.judges.metrics import attribute_accuracy
from diffusion_lab.models.unet import count_parameters
from diffusion_lab.training import AttributeObjective, TrainConfig, fit

SMALL = AttributeScorerConfig(width=8, feature_dim=32)


def train_attribute_scorer(model, images, attribute_indices, *, steps=600, batch_size=128, lr=2e-3, seed=0,
                           noise_std=0.1, max_lift=0.35, progress=False) -> list[float]:
    """What the shapes_scorer preset does: fit with the attribute objective and the judges' recipe."""
    config = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed, lr_schedule="one_cycle",
                         ema_decay=0.0, grad_clip=None, log_every=1)
    objective = AttributeObjective(images, attribute_indices, ATTRIBUTE_SIZES, noise_std=noise_std,
                                   max_lift=max_lift)
    return fit(model, objective, config, progress=progress).history.losses


def test_attribute_names_follow_the_columns_of_attribute_indices():
    assert ATTRIBUTE_NAMES == ("shape", "colour", "size", "position")


def test_forward_and_predict_shapes():
    torch.manual_seed(0)
    model = AttributeScorer(SMALL).eval()
    x = torch.rand(6, 3, 32, 32) * 2 - 1
    logits = model(x)
    assert list(logits) == list(ATTRIBUTE_NAMES)
    sizes = {"shape": len(SHAPES), "colour": len(COLOURS), "size": len(SIZES), "position": len(POSITIONS)}
    for name, n in sizes.items():
        assert logits[name].shape == (6, n)
    assert model.features(x).shape == (6, 32)
    predicted = model.predict(x)
    assert predicted.shape == (6, 4) and predicted.dtype == torch.int64
    assert not predicted.requires_grad
    for column, name in enumerate(ATTRIBUTE_NAMES):
        assert torch.equal(predicted[:, column], logits[name].argmax(dim=1))


def test_default_size_is_a_few_hundred_thousand_parameters():
    assert 200_000 <= count_parameters(AttributeScorer()) <= 500_000


@pytest.mark.parametrize(("changes", "match"), [
    ({"width": 0}, "width must be a positive int"),
    ({"feature_dim": 1.5}, "feature_dim must be a positive int"),
    ({"in_channels": True}, "in_channels must be a positive int"),
    ({"image_size": 28}, "divisible by 8"),
])
def test_config_rejects_bad_values(changes, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(AttributeScorerConfig(), **changes)


def test_model_rejects_bad_inputs():
    model = AttributeScorer(SMALL)
    with pytest.raises(TypeError, match="AttributeScorerConfig"):
        AttributeScorer({"width": 8})
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\).*x\[None\]"):
        model(torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        model(torch.zeros(2, 1, 28, 28))
    with pytest.raises(TypeError, match="float images"):
        model(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(TypeError, match="tensor"):
        model([[0.0]])


def test_training_rejects_bad_inputs():
    model = AttributeScorer(SMALL)
    images = torch.zeros(4, 3, 32, 32)
    good = torch.zeros(4, 4, dtype=torch.int64)
    with pytest.raises(ValueError, match="4 images but 3 labels"):
        train_attribute_scorer(model, images, torch.zeros(3, 4, dtype=torch.int64), progress=False)
    with pytest.raises(TypeError, match="int64"):
        train_attribute_scorer(model, images, good.float(), progress=False)
    bad = good.clone()
    bad[0, 2] = 2  # there are only two sizes
    with pytest.raises(ValueError, match=r"column 2 \(size\) of the labels must lie in 0\.\.1"):
        train_attribute_scorer(model, images, bad, progress=False)
    with pytest.raises(ValueError, match="steps"):
        train_attribute_scorer(model, images, good, steps=0, progress=False)
    with pytest.raises(ValueError, match="lr"):
        train_attribute_scorer(model, images, good, lr=-1.0, progress=False)
    with pytest.raises(ValueError, match="noise_std"):
        train_attribute_scorer(model, images, good, noise_std=-0.1, progress=False)


def test_training_is_seeded_and_leaves_eval_mode():
    data = make_shapes(64, seed=0, split="all")
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = AttributeScorer(SMALL)
        runs.append(train_attribute_scorer(model, data.images, data.attribute_indices, steps=3, batch_size=16,
                                           seed=3, progress=False))
        assert not model.training
    assert len(runs[0]) == 3 and runs[0] == runs[1]


def test_short_training_reads_fresh_pictures():
    # Held-out combinations are in the training data on purpose: the scorer judges the generator's pictures.
    train = make_shapes(2000, seed=0, split="all")
    test = make_shapes(500, seed=1, split="all")
    torch.manual_seed(0)
    model = AttributeScorer(SMALL)
    losses = train_attribute_scorer(model, train.images, train.attribute_indices, steps=400, batch_size=64,
                                    lr=5e-3, progress=False)
    assert sum(losses[-20:]) / 20 < 0.25 * sum(losses[:20]) / 20
    scores = attribute_accuracy(model, test.images, test.attribute_indices)
    assert scores["all"] > 0.8, scores
