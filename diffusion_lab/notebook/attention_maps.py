"""Where does each word act? Recorded cross-attention turned into one picture per word (chapter 06).

``models.attention.record_cross_attention`` keeps, for every CrossAttention block and every call of
the model, the weights (B, heads, h*w, L): how much each pixel of that block's h x w feature map
reads each of the L prompt tokens (each pixel's weights sum to 1 over the tokens). A map per word:

    token_maps(maps, size=32)       for each block: average over the calls (sampling steps) and the
                                    heads, put the h*w pixels back on their grid, enlarge to 32 x 32;
                                    then average over the blocks          -> (B, L, 32, 32)
    token_labels(ids, tokenizer)    the token each column belongs to, padding left out
    foreground_mask(images)         where a shapes picture is not background   -> (B, H, W) bool
    region_contrast(maps, mask)     mean weight inside the mask / mean over the picture -> (B, L)
    show_word_maps(...)             the picture beside one map per word

This is the idea of Hertz et al. (2022, "Prompt-to-Prompt") and Tang et al. (2022, "DAAM"), who read
Stable Diffusion's cross-attention the same way: averaged over heads, layers and steps, upsampled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from diffusion_lab.notebook.figures import to_display


def _block_map(name: str, calls: Sequence[torch.Tensor], steps: slice | Sequence[int] | None) -> torch.Tensor:
    """One block's recorded weights -> (B, L, h, w), averaged over the chosen calls and the heads."""
    if not calls:
        raise ValueError(f"block {name!r} recorded no calls: run the model inside record_cross_attention(model)")
    chosen = list(calls[steps]) if isinstance(steps, slice) else list(calls) if steps is None else \
        [calls[i] for i in steps]
    if not chosen:
        raise ValueError(f"steps={steps!r} selects none of the {len(calls)} recorded calls of block {name!r}")
    shapes = {tuple(w.shape) for w in chosen}
    if len(shapes) != 1 or len(next(iter(shapes))) != 4:
        raise ValueError(f"block {name!r}: expected calls shaped (B, heads, h*w, L), all alike, got {sorted(shapes)}")
    B, _, hw, L = chosen[0].shape
    side = math.isqrt(hw)
    if side * side != hw:
        raise ValueError(f"block {name!r} has {hw} pixels, not a square feature map")
    mean = torch.stack([w.float() for w in chosen]).mean(dim=(0, 2))  # (B, h*w, L): over calls and heads
    return mean.transpose(1, 2).reshape(B, L, side, side)  # (B, L, h, w), pixels in row-major order


def token_maps(maps: Mapping[str, Sequence[torch.Tensor]], size: int | None = 32, *,
               steps: slice | Sequence[int] | None = None, blocks: Sequence[str] | None = None) -> torch.Tensor:
    """Recorded cross-attention ``maps`` (name -> list of (B, heads, h*w, L), one per call) -> (B, L, size, size).

    steps: which calls to average (a slice or indices; None = all). With one model call per sampling
    step, ``steps=slice(0, 10)`` keeps the first (noisiest) ten steps.
    blocks: which blocks to average (names in ``maps``; None = all). Each block's map is enlarged
    bilinearly to ``size`` x ``size`` before the average; ``size=None`` keeps the blocks' own
    resolution, which must then be the same for all chosen blocks.
    Each pixel's weights still sum to 1 over the L tokens, and padding tokens get 0 everywhere.
    """
    if not maps:
        raise ValueError("no recorded maps: use `with record_cross_attention(model) as maps:` around the sampling")
    names = list(maps) if blocks is None else list(blocks)
    unknown = [n for n in names if n not in maps]
    if unknown or not names:
        raise ValueError(f"unknown blocks {unknown}; recorded blocks are {list(maps)}")
    per_block = [_block_map(n, maps[n], steps) for n in names]
    if size is None:
        sides = {m.shape[-1] for m in per_block}
        if len(sides) != 1:
            raise ValueError(f"the chosen blocks work at different resolutions {sorted(sides)}: give a size to "
                             f"enlarge them to, or choose blocks of one resolution")
    else:
        per_block = [m if m.shape[-1] == size else
                     F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False) for m in per_block]
    if len({m.shape[:2] for m in per_block}) != 1:
        raise ValueError("the blocks recorded different batch sizes or token counts; record one sampling run")
    return torch.stack(per_block).mean(dim=0)  # (B, L, size, size)


def token_labels(ids: torch.Tensor, tokenizer) -> list[list[str]]:
    """Token ids (B, L) -> for each prompt the tokens its map columns belong to, padding left out.

    ``["<start>", "a", "small", "red", ...]``: column j of ``token_maps`` is token j of this list.
    """
    if not isinstance(ids, torch.Tensor) or ids.ndim != 2:
        raise ValueError(f"ids must be (B, L) token ids, got {getattr(ids, 'shape', type(ids).__name__)}")
    mask = tokenizer.mask(ids)
    return [[tokenizer.tokens[i] for i, real in zip(row.tolist(), keep.tolist()) if real]
            for row, keep in zip(ids, mask)]


def foreground_mask(images: torch.Tensor, threshold: float = -0.3) -> torch.Tensor:
    """Shapes pictures (B, 3, H, W) in [-1, 1] -> (B, H, W) bool, True where the brightest channel exceeds
    ``threshold``. The background is (18, 18, 24) of 255, about -0.86; every colour has a channel above 200
    of 255 (+0.57), so the default threshold (89 of 255) lies well between them."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W) in [-1, 1], got {getattr(images, 'shape', type(images).__name__)}")
    return images.detach().float().amax(dim=1).cpu() > threshold


def region_contrast(maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """How much more each token is read inside ``mask`` than over the whole picture: (B, L).

    maps (B, L, H, W) from ``token_maps``; mask (B, H, W) bool, e.g. ``foreground_mask(samples)``.
    Mean weight inside the mask divided by the mean over all pixels: 1 means no preference, 2 means the
    token is read twice as much on the masked region as on average. NaN where a mask is empty or a
    token gets no weight at all (padding).
    """
    if maps.ndim != 4 or mask.shape != (maps.shape[0], *maps.shape[2:]):
        raise ValueError(f"need maps (B, L, H, W) and a mask (B, H, W) of the same pictures, got "
                         f"{tuple(maps.shape)} and {tuple(mask.shape)}")
    m = mask.to(maps.dtype)[:, None]  # (B, 1, H, W)
    inside = (maps * m).sum(dim=(2, 3)) / m.sum(dim=(2, 3))  # (B, L); 0/0 = NaN for an empty mask
    overall = maps.mean(dim=(2, 3))  # (B, L)
    return torch.where(overall > 0, inside / overall, torch.nan)


def show_word_maps(images: torch.Tensor, labels: Sequence[Sequence[str]], maps: torch.Tensor, *,
                   outline: torch.Tensor | None = None, skip: Sequence[str] = (), scale: float = 1.3,
                   shared_scale: bool = False) -> Figure:
    """One row per picture: the picture, then one map per token (each token's mean weight in its title).

    images (B, 3, H, W) in [-1, 1]; labels from ``token_labels``; maps (B, L, H, W) from ``token_maps``.
    outline: (B, H, W) bool drawn as a white contour on every map (e.g. ``foreground_mask(images)``).
    skip: tokens not to draw (e.g. ``["<start>"]``). Each map gets its own colour range unless
    ``shared_scale`` (then 0 to the largest weight of its row).
    """
    if len(labels) != len(images) or maps.shape[0] != len(images):
        raise ValueError(f"need one label list and one set of maps per picture: {len(images)} pictures, "
                         f"{len(labels)} label lists, maps for {maps.shape[0]}")
    columns = [[j for j, tok in enumerate(row) if tok not in skip] for row in labels]
    ncol = 1 + max(len(c) for c in columns)
    fig, axes = plt.subplots(len(images), ncol, figsize=(scale * ncol, scale * len(images) + 0.3), squeeze=False)
    for r, (image, row, cols) in enumerate(zip(images, labels, columns)):
        for ax in axes[r]:
            ax.axis("off")
        axes[r, 0].imshow(to_display(image))
        vmax = float(maps[r, cols].max()) if shared_scale else None
        for k, j in enumerate(cols, start=1):
            ax = axes[r, k]
            ax.imshow(maps[r, j].cpu().numpy(), cmap="magma", vmin=0 if shared_scale else None, vmax=vmax)
            if outline is not None and outline[r].any() and not outline[r].all():  # a contour needs both sides
                ax.contour(outline[r].float().cpu().numpy(), levels=[0.5], colors="white", linewidths=0.8)
            ax.set_title(f"{row[j]}\n{float(maps[r, j].mean()):.2f}", fontsize=8)
    fig.tight_layout()
    return fig
