"""Attribute binding of generated two-shape scenes, read by the scene scorer (chapters 10-11).

A prompt such as "a red circle to the left of a blue square" is drawn right only when both objects have the
right shape AND the right colour AND stand the right way round. ``binding_accuracy`` reads each picture with
the ``SceneScorer`` (``scene_scorer.py``) and compares its canonical reading with the caption's, field by
field; "all" (every field right) is the binding score.

The scorer reads 32 x 32 pictures. A 64 x 64 picture (chapter 11's) is first shrunk by 2 x 2 average pooling,
``at_scorer_size``: averaging 2 x 2 blocks of a 64 x 64 rendering gives nearly the 32 x 32 rendering of the
same scene, with its edges anti-aliased a little more finely (bench/results/scene_scorer_accuracy.md measures
the scorer on real pictures at both sizes).

Not to be confused with ``clip_score.binding_accuracy`` (chapter 10), which asks a CLIP whether a real
picture matches its caption better than the colour-swapped caption: that one tests a text encoder, this one
judges generated pictures.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from diffusion_lab.judges.scene_scorer import READING_NAMES, SceneScorer, canonical_indices
from diffusion_lab.tensors import check_images, eval_mode


def at_scorer_size(images: torch.Tensor, size: int = 32) -> torch.Tensor:
    """images (N, C, size, size) unchanged, or (N, C, 2 size, 2 size) shrunk by 2 x 2 average pooling."""
    check_images(images)
    side = images.shape[-1]
    if images.shape[-2] != side or side not in (size, 2 * size):
        raise ValueError(f"the scene scorer reads {size}x{size} pictures, or {2 * size}x{2 * size} ones that it "
                         f"shrinks 2x; got {tuple(images.shape[-2:])}. Resize others with "
                         f"F.interpolate(images, size={size}, mode='area')")
    return images if side == size else F.avg_pool2d(images, 2)  # (N, C, size, size)


def binding_accuracy(scorer: nn.Module, images: torch.Tensor, captions: Sequence[str],
                     batch_size: int = 500) -> dict[str, float]:
    """Share of pictures whose canonical reading matches their two-shape caption's.

    ``scorer``: a ``SceneScorer``; ``images`` (N, 3, 32, 32) or (N, 3, 64, 64) in [-1, 1], the latter shrunk by
    2 x 2 average pooling before scoring (``at_scorer_size``); ``captions``: N
    two-shape captions, either wording ("A left of B" or "B right of A"). Returns {"axis", "shape_a",
    "colour_a", "shape_b", "colour_b", "all"}, each in [0, 1]; "all" is the share with every field right: the
    binding score. Runs in batches on the scorer's device, without gradients, in eval mode (restored afterwards).
    """
    if not isinstance(scorer, SceneScorer):
        raise TypeError(f"scorer must be a SceneScorer, e.g. load_pretrained('scenes_scorer').model, "
                        f"got {type(scorer).__name__}")
    if isinstance(captions, str) or len(captions) != len(images):
        raise ValueError(f"give one caption per picture: {len(images)} pictures, "
                         f"{1 if isinstance(captions, str) else len(captions)} captions")
    wanted = canonical_indices(captions)  # (N, 5)
    images = at_scorer_size(images, scorer.config.image_size)  # (N, 3, 32, 32)
    device = next(scorer.parameters()).device
    with torch.no_grad(), eval_mode(scorer):
        predicted = torch.cat([scorer.predict(images[i:i + batch_size].to(device)).cpu()
                               for i in range(0, len(images), batch_size)])  # (N, 5)
    right = predicted == wanted  # (N, 5) bool
    scores = {name: right[:, k].double().mean().item() for k, name in enumerate(READING_NAMES)}
    scores["all"] = right.all(dim=1).double().mean().item()
    return scores
