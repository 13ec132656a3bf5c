"""Judging with a CLIP: zero-shot attribute reading, CLIP score and attribute binding (chapter 10).

- ``zero_shot_attributes``: for one-shape pictures, score all 250 one-shape captions ("a small red circle in
  the top left", ...) and read (shape, colour, size, position) off the best one, with no classifier trained
  for it (CLIP's zero-shot classification, Radford et al. 2021, sec. 3.1.2); ``attribute_accuracy_of`` counts
  how often each attribute is right against the ground truth.
- ``clip_score``: the cosine similarity of each picture with its caption (Hessel et al. 2021 report
  100 * max(cos, 0); we keep the plain cosine in [-1, 1]).
- ``binding_accuracy``: the share of two-shape scenes whose true caption scores above the same caption with
  the colours swapped ("a red circle left of a blue square" against "a blue circle left of a red square").
  Both captions hold the same words, so only a model that binds each colour to its shape can tell them apart.

Every helper runs without gradients, in eval mode (restored afterwards), in batches on the CLIP's device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from diffusion_lab.data.scenes import SceneDataset, swap_colours
from diffusion_lab.data.shapes import combinations
from diffusion_lab.judges.attribute_scorer import ATTRIBUTE_NAMES
from diffusion_lab.tensors import check_images, eval_mode


def _device(clip: nn.Module) -> torch.device:
    return next(clip.parameters()).device


@torch.no_grad()
def embed_images(clip: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """images (N, C, H, W) in [-1, 1] -> image_emb (N, D) unit vectors, on the CPU."""
    check_images(images)
    device = _device(clip)
    with eval_mode(clip):
        return torch.cat([clip.encode_image(images[i:i + batch_size].to(device)).float().cpu()
                          for i in range(0, len(images), batch_size)])


@torch.no_grad()
def embed_captions(clip: nn.Module, captions: Sequence[str], batch_size: int = 500) -> torch.Tensor:
    """N captions -> text_emb (N, D) unit vectors, on the CPU."""
    if isinstance(captions, str) or not isinstance(captions, Sequence) or not captions:
        raise TypeError(f"captions must be a non-empty list of str, got {captions!r:.80}")
    ids = clip.tokenizer.encode(list(captions))  # (N, L)
    device = _device(clip)
    with eval_mode(clip):
        return torch.cat([clip.encode_text(ids[i:i + batch_size].to(device)).float().cpu()
                          for i in range(0, len(ids), batch_size)])


def one_shape_captions() -> tuple[list[str], torch.Tensor]:
    """The 250 one-shape captions and their attribute indices (250, 4), columns (shape, colour, size, position)."""
    every = combinations("all")
    return [a.caption() for a in every], torch.tensor([a.indices() for a in every], dtype=torch.int64)


def zero_shot_attributes(clip: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """One-shape pictures (B, C, H, W) -> (B, 4) int64 attribute indices (shape, colour, size, position): those of
    the one-shape caption whose embedding is most similar to the picture's."""
    captions, indices = one_shape_captions()
    similarity = embed_images(clip, images) @ embed_captions(clip, captions).t()  # (B, 250)
    return indices[similarity.argmax(dim=1)]  # (B, 4)


def attribute_accuracy_of(predicted: torch.Tensor, wanted: torch.Tensor) -> dict[str, float]:
    """Per attribute, the share of rows of ``predicted`` (N, 4) equal to ``wanted`` (N, 4) (a ShapesDataset's
    ``attribute_indices``), and under "all" the share with all four right; keys as ``metrics.attribute_accuracy``."""
    if predicted.shape != wanted.shape or predicted.ndim != 2 or predicted.shape[1] != len(ATTRIBUTE_NAMES):
        raise ValueError(f"predicted and wanted must both be (N, {len(ATTRIBUTE_NAMES)}) attribute indices, got "
                         f"{tuple(predicted.shape)} and {tuple(wanted.shape)}")
    right = predicted.cpu() == wanted.cpu()  # (N, 4)
    scores = {name: right[:, i].double().mean().item() for i, name in enumerate(ATTRIBUTE_NAMES)}
    scores["all"] = right.all(dim=1).double().mean().item()
    return scores


def clip_score(clip: nn.Module, images: torch.Tensor, captions: Sequence[str]) -> torch.Tensor:
    """cos(image_emb_i, text_emb_i) for each picture and its own caption: (B,) in [-1, 1], on the CPU."""
    if isinstance(captions, str) or len(captions) != len(images):
        raise ValueError(f"give one caption per picture: {len(images)} pictures, "
                         f"{1 if isinstance(captions, str) else len(captions)} captions")
    return (embed_images(clip, images) * embed_captions(clip, captions)).sum(dim=1)  # (B,)


def binding_accuracy(clip: nn.Module, scenes: SceneDataset) -> float:
    """Share of the two-shape scenes (with two different colours) whose picture is more similar to its caption
    than to the colour-swapped caption. Chance is 0.5; scenes of one shape or one colour are skipped."""
    if not isinstance(scenes, SceneDataset):
        raise TypeError(f"scenes must be a SceneDataset from make_scenes(...), got {type(scenes).__name__}")
    keep = [i for i, s in enumerate(scenes.scenes) if len(s.objects) == 2 and s.objects[0].colour != s.objects[1].colour]
    if not keep:
        raise ValueError("no two-shape scene with two different colours to score; use make_scenes(n, "
                         "two_shape_fraction=1.0) with n of a few hundred")
    image_emb = embed_images(clip, scenes.images[keep])  # (K, D)
    captions = [scenes.captions[i] for i in keep]
    true = (image_emb * embed_captions(clip, captions)).sum(dim=1)  # (K,)
    swapped = (image_emb * embed_captions(clip, [swap_colours(c) for c in captions])).sum(dim=1)  # (K,)
    return (true > swapped).double().mean().item()
