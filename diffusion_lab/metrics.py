"""How good are the samples? Scores computed with the shipped MNIST classifier (chapters 05 and 07).

- ``recognised_fraction``: the share of samples the classifier labels with confidence >= 0.9.
- ``class_counts``: how many samples fall in each class (a model that only draws 1s scores badly here).
- ``class_accuracy``: for class-conditional samples, the share classified as the class that was asked for.
- ``fid``: the Frechet distance between Gaussians fitted to the classifier's 128-d features of the
  samples and of real test digits (Heusel et al. 2017, with MNIST features instead of Inception's).
  Lower is better; real digits against other real digits score close to 0.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def _batched(classifier: nn.Module, fn, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Apply ``fn`` (a method of ``classifier``) in batches on the classifier's device; results on the CPU."""
    classifier.eval()
    device = next(classifier.parameters()).device
    return torch.cat([fn(images[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(images), batch_size)])


def class_probabilities(classifier: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """images (N, 1, 28, 28) in [-1, 1] -> class probabilities (N, 10)."""
    return _batched(classifier, classifier.forward, images).softmax(dim=1)


def features(classifier: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """images (N, 1, 28, 28) -> the classifier's penultimate features (N, F), float64 for statistics."""
    return _batched(classifier, classifier.features, images).double()


def recognised_fraction(probs: torch.Tensor, threshold: float = 0.9) -> float:
    """Share of samples whose most likely class has probability >= threshold."""
    return (probs.max(dim=1).values >= threshold).float().mean().item()


def class_counts(probs: torch.Tensor) -> torch.Tensor:
    """(num_classes,) how many samples are classified as each class."""
    return torch.bincount(probs.argmax(dim=1), minlength=probs.shape[1])


def class_accuracy(probs: torch.Tensor, wanted: torch.Tensor) -> float:
    """Share of samples classified as the class in ``wanted`` (N,)."""
    if wanted.shape != probs.shape[:1]:
        raise ValueError(f"need one wanted class per sample: {probs.shape[0]} samples, {tuple(wanted.shape)} labels")
    return (probs.argmax(dim=1) == wanted.cpu()).float().mean().item()


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) for features (N, F), computed in float64."""
    if feats_a.ndim != 2 or feats_b.ndim != 2 or feats_a.shape[1] != feats_b.shape[1]:
        raise ValueError(f"need two (N, F) feature sets with the same F, got {tuple(feats_a.shape)} "
                         f"and {tuple(feats_b.shape)}")
    if min(len(feats_a), len(feats_b)) < 2:
        raise ValueError("need at least 2 samples in each set to estimate a covariance")
    a, b = feats_a.double(), feats_b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    # Tr((S_a S_b)^(1/2)) = sum of sqrt(eigenvalues of S_a^(1/2) S_b S_a^(1/2)), a symmetric PSD matrix.
    vals, vecs = torch.linalg.eigh(cov_a)
    sqrt_a = vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T
    middle = torch.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a).clamp(min=0).sqrt().sum()
    return ((mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * middle).item()


def fid(classifier: nn.Module, samples: torch.Tensor, reference: torch.Tensor) -> float:
    """FID between sample images and reference images (both (N, 1, 28, 28) in [-1, 1]) on MNIST features."""
    return frechet_distance(features(classifier, samples), features(classifier, reference))
