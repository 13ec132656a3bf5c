"""metrics: exact answers for the Frechet distance, and the classifier-based scores."""

import pytest
import torch

from diffusion_lab.judges.metrics import (
    class_accuracy,
    class_counts,
    class_probabilities,
    features,
    fid,
    frechet_distance,
    recognised_fraction,
)
from diffusion_lab.judges.mnist_classifier import ClassifierConfig, MNISTClassifier


def test_frechet_distance_of_a_set_with_itself_is_zero():
    x = torch.randn(500, 8, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_of_a_shift_is_its_squared_length():
    x = torch.randn(400, 5, generator=torch.Generator().manual_seed(1))
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0])
    assert frechet_distance(x, x + shift) == pytest.approx(float(shift.pow(2).sum()), rel=1e-9)


def test_frechet_distance_of_scaled_gaussians_matches_the_closed_form():
    # x and s x have covariances S and s^2 S (and means m, s m): FID = |m - s m|^2 + Tr(S) (1 - s)^2.
    x = torch.randn(2_000, 3, generator=torch.Generator().manual_seed(2)).double() + 1
    s = 2.0
    expected = ((1 - s) * x.mean(0)).pow(2).sum() + torch.cov(x.T).trace() * (1 - s) ** 2
    assert frechet_distance(x, s * x) == pytest.approx(float(expected), rel=1e-9)


@pytest.mark.parametrize(("a", "b", "match"), [
    (torch.zeros(10, 3), torch.zeros(10, 4), "same F"),
    (torch.zeros(10), torch.zeros(10, 4), r"\(N, F\)"),
    (torch.zeros(1, 3), torch.zeros(10, 3), "at least 2"),
])
def test_frechet_distance_bad_inputs(a, b, match):
    with pytest.raises(ValueError, match=match):
        frechet_distance(a, b)


def test_scores_from_probabilities():
    probs = torch.tensor([[0.95, 0.05], [0.6, 0.4], [0.05, 0.95], [0.02, 0.98]])
    assert recognised_fraction(probs, 0.9) == 0.75
    assert class_counts(probs).tolist() == [2, 2]
    assert class_accuracy(probs, torch.tensor([0, 1, 1, 1])) == 0.75
    with pytest.raises(ValueError, match="one wanted class per sample"):
        class_accuracy(probs, torch.tensor([0, 1]))


def test_classifier_scores_have_the_right_shapes():
    torch.manual_seed(0)
    clf = MNISTClassifier(ClassifierConfig())
    images = torch.rand(12, 1, 28, 28) * 2 - 1
    probs = class_probabilities(clf, images)
    assert probs.shape == (12, 10) and torch.allclose(probs.sum(1), torch.ones(12))
    assert features(clf, images).shape == (12, 128)
    assert fid(clf, images, images) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="expects images shaped"):
        class_probabilities(clf, torch.zeros(2, 3, 28, 28))


def test_share_at_limits_counts_values_stored_as_0_or_255():
    from diffusion_lab.judges.metrics import share_at_limits

    x = torch.zeros(2, 3, 4, 4)
    assert share_at_limits(x) == 0.0
    x[0, 0] = 1.0  # one channel of one picture white: 16 of 96 values
    x[1, 2, 0, 0] = -3.0  # beyond the range: clipped to 0 when stored
    assert share_at_limits(x) == pytest.approx(17 / 96)
    assert share_at_limits(torch.full((1, 3, 2, 2), 0.997)) == 1.0  # 254.6 rounds to 255
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        share_at_limits(torch.zeros(3, 4, 4))
