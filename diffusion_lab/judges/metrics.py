"""How good are the samples? Scores computed with the shipped MNIST classifier (chapters 05 and 07).

- ``recognised_fraction``: the share of samples the classifier labels with confidence >= 0.9.
- ``class_counts``: how many samples fall in each class (a model that only draws 1s scores badly here).
- ``class_accuracy``: for class-conditional samples, the share classified as the class that was asked for.
- ``fid``: the Frechet distance between Gaussians fitted to the classifier's 128-d features of the
  samples and of real test digits (Heusel et al. 2017, with MNIST features instead of Inception's).
  Lower is better; real digits against other real digits score close to 0.

For text-to-image samples of the shapes data set (chapters 06-08, 10), scored with the
``AttributeScorer`` (``judges/attribute_scorer.py``):

- ``attribute_accuracy``: per attribute (shape, colour, size, position), the share of samples that show
  the one their caption asked for, and under "all" the share that got all four right.
- ``mean_pairwise_distance``: the mean Euclidean distance over all distinct pairs of vectors.
- ``diversity``: the mean pairwise distance among samples for ONE prompt, on features or on pixels
  (RMS pixel distance). A model that draws the same picture every time scores 0.

For point sets such as the 2-D toys (chapter 09):

- ``sliced_wasserstein``: the sliced Wasserstein distance (order p = 2 by default, or 1) between two sets of
  points, 0 for the same set; it compares whole distributions (where the mass is, how much in each mode), not
  only their means. On far-apart modes use p = 1, whose sampling noise falls as n^(-1/2) (see its docstring).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from diffusion_lab.tensors import eval_mode


@torch.no_grad()
def _batched(classifier: nn.Module, fn, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Apply ``fn`` (a method of ``classifier``) in batches, in eval mode (restored afterwards), on the
    classifier's device; results on the CPU."""
    device = next(classifier.parameters()).device
    with eval_mode(classifier):
        return torch.cat([fn(images[i:i + batch_size].to(device)).float().cpu()
                          for i in range(0, len(images), batch_size)])


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


def attribute_accuracy(scorer: nn.Module, images: torch.Tensor, wanted: torch.Tensor,
                       batch_size: int = 500) -> dict[str, float]:
    """Share of samples whose attributes the scorer reads as ``wanted``.

    ``scorer``: an ``AttributeScorer`` (or any module whose forward returns a dict of logits keyed
    "shape", "colour", "size", "position"); ``images`` (N, 3, 32, 32) in [-1, 1]; ``wanted`` (N, 4)
    int64, columns (shape, colour, size, position) as in ``ShapesDataset.attribute_indices``.
    Returns {"shape": ..., "colour": ..., "size": ..., "position": ..., "all": ...}, each in [0, 1];
    "all" is the share of samples with all four attributes right. Runs in batches on the scorer's
    device, without gradients, in eval mode (the scorer's mode is restored afterwards).
    """
    from diffusion_lab.judges.attribute_scorer import ATTRIBUTE_NAMES

    if not isinstance(images, torch.Tensor) or not isinstance(wanted, torch.Tensor):
        raise TypeError("images and wanted must be tensors; take wanted from a ShapesDataset's attribute_indices "
                        "or torch.tensor([a.indices() for a in attributes])")
    if wanted.ndim != 2 or wanted.shape[1] != len(ATTRIBUTE_NAMES) or wanted.shape[0] != images.shape[0]:
        raise ValueError(f"need one row of wanted {ATTRIBUTE_NAMES} indices per image: {images.shape[0]} images, "
                         f"wanted shaped {tuple(wanted.shape)} (expected ({images.shape[0]}, {len(ATTRIBUTE_NAMES)}))")
    if wanted.dtype != torch.int64:
        raise TypeError(f"wanted must hold int64 indices, got {wanted.dtype}")
    if len(images) == 0:
        raise ValueError("need at least one image to score")

    device = next(iter(scorer.parameters()), torch.empty(0)).device  # the CPU for a module without parameters
    predicted = []
    with torch.no_grad(), eval_mode(scorer):
        for start in range(0, len(images), batch_size):
            logits = scorer(images[start:start + batch_size].to(device))  # name -> (B, n_name)
            predicted.append(torch.stack([logits[name].argmax(dim=1) for name in ATTRIBUTE_NAMES], dim=1).cpu())
    predicted = torch.cat(predicted)  # (N, 4)
    right = predicted == wanted.cpu()  # (N, 4) bool
    scores = {name: right[:, i].double().mean().item() for i, name in enumerate(ATTRIBUTE_NAMES)}
    scores["all"] = right.all(dim=1).double().mean().item()
    return scores


def share_at_limits(images: torch.Tensor) -> float:
    """How blown out pictures are: the share of their colour values at 0 or 255 once stored as uint8.

    ``images`` (N, C, H, W) in [-1, 1] (values beyond are clipped, as saving clips them). Strong guidance drives
    this up (chapter 11's guidance sweep); real pictures of the shapes scenes have none.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"need pictures shaped (N, C, H, W), got {tuple(getattr(images, 'shape', ()))}")
    u8 = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round()
    return float(((u8 == 0) | (u8 == 255)).float().mean())


def mean_pairwise_distance(vectors: torch.Tensor) -> float:
    """Mean Euclidean distance ||v_i - v_j|| over all N (N - 1) / 2 pairs i < j of ``vectors`` (N, F), in float64."""
    if not isinstance(vectors, torch.Tensor) or vectors.ndim != 2:
        raise ValueError(f"need vectors shaped (N, F), got {tuple(getattr(vectors, 'shape', ()))}; "
                         f"flatten images with x.flatten(1)")
    n = vectors.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 vectors to measure a distance between them, got {n}")
    v = vectors.detach().cpu().double()
    distances = torch.cdist(v, v, compute_mode="donot_use_mm_for_euclid_dist")  # (N, N), exact rather than fast
    i, j = torch.triu_indices(n, n, offset=1)
    return distances[i, j].mean().item()


def diversity(images: torch.Tensor, features_fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> float:
    """How different the samples for ONE prompt are: the mean pairwise distance among them.

    ``images`` (N, ...) with N >= 2, e.g. (N, 3, 32, 32) in [-1, 1]. With ``features_fn`` (images ->
    (N, F)), the distance is taken between features, e.g.
    ``diversity(x, lambda x: features(classifier, x))`` for the MNIST classifier's 128-d features.
    Without it, between flattened pixels divided by sqrt(number of values per image): the RMS pixel
    difference, in the images' own units (for [-1, 1] images, 0 = identical, 2 = black against white
    everywhere), which does not grow with the image size. 0 means every sample is the same picture;
    compare values only between runs that use the same ``features_fn``.
    """
    if not isinstance(images, torch.Tensor) or images.ndim < 2:
        raise ValueError(f"need a batch of images shaped (N, ...), got {tuple(getattr(images, 'shape', ()))}")
    if images.shape[0] < 2:
        raise ValueError(f"diversity compares samples with each other: need at least 2 samples, got {images.shape[0]}")
    if features_fn is None:
        flat = images.detach().cpu().flatten(1).double()  # (N, D), float64 on the CPU (MPS has none)
        return mean_pairwise_distance(flat / math.sqrt(flat.shape[1]))
    feats = features_fn(images)
    if not isinstance(feats, torch.Tensor) or feats.ndim != 2 or feats.shape[0] != images.shape[0]:
        raise ValueError(f"features_fn must map {images.shape[0]} images to a tensor shaped "
                         f"({images.shape[0]}, F), got {tuple(getattr(feats, 'shape', ()))}")
    return mean_pairwise_distance(feats)


def _wasserstein_pp_1d(a: torch.Tensor, b: torch.Tensor, p: float) -> torch.Tensor:
    """W_p^p between the empirical distributions of the rows of a (P, Na) and b (P, Nb), float64, exactly: the
    integral over q in [0, 1] of |F_a^-1(q) - F_b^-1(q)|^p, both inverse CDFs steps of the sorted points. (P,)"""
    # numpy's sort is about ten times torch's on the CPU, and the sort is all the work here
    a, b = (torch.from_numpy(np.sort(x.numpy(), axis=1)) for x in (a, b))
    na, nb = a.shape[1], b.shape[1]
    if na == nb:  # equal sizes: match the i-th smallest with the i-th smallest
        return (a - b).abs().pow(p).mean(1)
    ends = torch.cat([torch.arange(1, na + 1, dtype=torch.float64) / na,  # i / Na == j / Nb exactly when equal
                      torch.arange(1, nb + 1, dtype=torch.float64) / nb]).unique()  # sorted
    widths = torch.diff(ends, prepend=ends.new_zeros(1))  # (M,) the intervals where both steps are constant
    mid = ends - widths / 2
    ia = (mid * na).long().clamp(max=na - 1)  # which point of a each interval's quantile is
    ib = (mid * nb).long().clamp(max=nb - 1)
    return (widths * (a[:, ia] - b[:, ib]).abs().pow(p)).sum(1)


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, num_projections: int = 256,
                       generator: torch.Generator | None = None, p: float = 2) -> float:
    """The sliced Wasserstein-p distance between point sets a (Na, d) and b (Nb, d) (Bonneel et al. 2015).

    Both sets are projected on ``num_projections`` random unit directions; along each, the 1-D W_p between
    the two sets of numbers is exact (sorted points against sorted points, through their quantiles when
    Na != Nb). Returns (mean over directions of W_p^p)^(1/p), in the points' own units: 0 for the same set;
    for a set against itself shifted by s, about |s| / sqrt(d) (p = 2) or the mean of |theta . s| over unit
    directions theta (p = 1: 2|s| / pi in 2-D). The directions come from ``generator`` (default: seed 0, so
    every call measures along the same directions). Computed in float64 on the CPU.

    Which p: moving a share delta of the mass a distance L costs delta L in W_1 but sqrt(delta) L in W_2, so
    on a mixture with far-apart modes W_2 is dominated by the random share of points that land in each mode
    and its sampling noise falls only as n^(-1/4); W_1's falls as n^(-1/2) (``tests/test_sliced_wasserstein.py``).
    """
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"{name} must be a non-empty tensor of points shaped (N, d), got "
                             f"{tuple(getattr(x, 'shape', ())) or type(x).__name__}; flatten images with x.flatten(1)")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must have the same number of values per point, got {a.shape[1]} and {b.shape[1]}")
    if isinstance(num_projections, bool) or not isinstance(num_projections, int) or num_projections < 1:
        raise ValueError(f"num_projections must be a positive int, got {num_projections!r}")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 1 <= p < math.inf:
        raise ValueError(f"p must be a number >= 1 (1: W_1, 2: W_2), got {p!r}")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    directions = torch.randn(a.shape[1], num_projections, generator=generator, dtype=torch.float64)  # (d, P)
    directions = directions / directions.norm(dim=0, keepdim=True)  # unit columns: uniform on the sphere
    pa, pb = (directions.T @ x.detach().cpu().double().T for x in (a, b))  # (P, Na), (P, Nb): one row a direction
    return _wasserstein_pp_1d(pa, pb, p).mean().pow(1 / p).item()
