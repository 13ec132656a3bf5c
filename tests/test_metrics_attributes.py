"""metrics for the shapes data set: attribute accuracy on a fake scorer, pairwise distances, diversity."""

import math

import pytest
import torch
from torch import nn

from diffusion_lab.judges.metrics import attribute_accuracy, diversity, mean_pairwise_distance


class FixedScorer(nn.Module):
    """Returns the same logits for every batch of the given predictions (N, 4), in order, in slices."""

    def __init__(self, predictions: torch.Tensor) -> None:
        super().__init__()
        self.predictions = predictions
        self.seen = 0
        self.batch_sizes = []

    def forward(self, x):
        rows = self.predictions[self.seen:self.seen + len(x)]
        self.seen += len(x)
        self.batch_sizes.append(len(x))
        sizes = {"shape": 5, "colour": 5, "size": 2, "position": 5}
        return {name: nn.functional.one_hot(rows[:, i], n).float() for i, (name, n) in enumerate(sizes.items())}


def test_attribute_accuracy_on_a_fake_scorer():
    predicted = torch.tensor([[0, 1, 0, 4],
                              [2, 2, 1, 3],
                              [4, 0, 1, 0],
                              [1, 3, 0, 2]])
    wanted = torch.tensor([[0, 1, 0, 4],   # all right
                           [2, 2, 0, 3],   # size wrong
                           [3, 0, 1, 1],   # shape and position wrong
                           [1, 3, 0, 2]])  # all right
    scorer = FixedScorer(predicted)
    scores = attribute_accuracy(scorer, torch.zeros(4, 3, 32, 32), wanted, batch_size=3)
    assert scores == {"shape": 0.75, "colour": 1.0, "size": 0.75, "position": 0.75, "all": 0.5}
    assert scorer.batch_sizes == [3, 1]


def test_attribute_accuracy_bad_inputs():
    scorer = FixedScorer(torch.zeros(4, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="one row of wanted"):
        attribute_accuracy(scorer, torch.zeros(4, 3, 32, 32), torch.zeros(3, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="one row of wanted"):
        attribute_accuracy(scorer, torch.zeros(4, 3, 32, 32), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(TypeError, match="int64"):
        attribute_accuracy(scorer, torch.zeros(4, 3, 32, 32), torch.zeros(4, 4))


def test_mean_pairwise_distance_of_three_points():
    # (0, 0), (3, 4), (6, 0): distances 5, 6 and 5.
    points = torch.tensor([[0.0, 0.0], [3.0, 4.0], [6.0, 0.0]])
    assert mean_pairwise_distance(points) == pytest.approx(16 / 3, rel=1e-12)


def test_mean_pairwise_distance_is_exact_in_float64():
    points = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0 + 1e-6]])
    assert mean_pairwise_distance(points) == pytest.approx(float(torch.tensor(1.0 + 1e-6) - 1.0), rel=1e-9)


@pytest.mark.parametrize("vectors", [torch.zeros(1, 3), torch.zeros(5), torch.zeros(2, 3, 4)])
def test_mean_pairwise_distance_bad_inputs(vectors):
    with pytest.raises(ValueError, match=r"at least 2|\(N, F\)"):
        mean_pairwise_distance(vectors)


def test_diversity_is_zero_for_identical_images():
    image = torch.rand(3, 32, 32) * 2 - 1
    assert diversity(image.expand(8, 3, 32, 32)) == 0.0


def test_diversity_is_the_rms_pixel_distance():
    # Two images that differ by 0.5 in every pixel value: RMS distance 0.5 whatever their size.
    a = torch.zeros(2, 3, 32, 32)
    a[1] += 0.5
    assert diversity(a) == pytest.approx(0.5, rel=1e-12)
    assert diversity(a[:, :1, :8, :8]) == pytest.approx(0.5, rel=1e-12)


def test_diversity_grows_with_spread():
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(1, 3, 32, 32, generator=gen) * 2 - 1
    noise = torch.randn(16, 3, 32, 32, generator=gen)
    values = [diversity(base + s * noise) for s in (0.01, 0.1, 0.5)]
    assert values[0] < values[1] < values[2]
    assert values[1] == pytest.approx(0.1 * math.sqrt(2), rel=0.05)  # two noises of std s differ by s sqrt(2)


def test_diversity_on_features():
    images = torch.arange(3.0).reshape(3, 1, 1, 1).expand(3, 1, 4, 4)  # constant images 0, 1, 2
    assert diversity(images, lambda x: x.mean(dim=(1, 2, 3))[:, None] * 2) == pytest.approx(8 / 3)
    with pytest.raises(ValueError, match="features_fn"):
        diversity(images, lambda x: x.mean(dim=(1, 2, 3)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        diversity(images[:1])
