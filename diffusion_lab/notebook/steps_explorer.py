"""A slider over the number of sampling steps, the same seeds at each (chapter 09): how few steps a sampler needs.

Built as ``widgets.py``'s explorers are: an ipywidgets layout in an ``Explorer`` that carries a static picture
for places where no widget front end runs.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import ipywidgets as W
import matplotlib.pyplot as plt
import torch
from PIL import Image

from diffusion_lab.notebook.figures import figure_to_image, make_grid, to_display
from diffusion_lab.notebook.widgets import Explorer, _check_drawn


def _steps_panel(ax: plt.Axes, images: torch.Tensor, nrow: int, title: str, row_labels: Sequence[str] | None) -> None:
    """The pictures of one K as a grid, titled, with a name at the left of each row."""
    grid = make_grid(images, nrow=nrow)
    ax.imshow(to_display(grid), cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    rows = -(-images.shape[0] // nrow)
    ax.set_yticks([grid.shape[1] * (i + 0.5) / rows for i in range(rows)] if row_labels else [],
                  list(row_labels or [])[:rows], fontsize=8)
    for spine in ax.spines.values():
        spine.set_visible(False)


def steps_explorer(draw: Callable[[int], torch.Tensor], steps: Sequence[int], *, value: int | None = None,
                   nrow: int = 8, row_labels: Sequence[str] | None = None, columns: int = 3) -> Explorer:
    """A slider over the number of sampling steps K (chapter 09): the same seeds, drawn with each K.

    draw: K -> pictures (N, C, H, W) in [-1, 1], ``nrow`` to a row (e.g. one row per sampler, the same starting
    noise in every row); row_labels: a name for each row. Every K of ``steps`` is drawn now, so the slider moves
    between them at once; the static picture shown where widgets cannot run has them side by side, ``columns``
    to a line. value: the K shown first (default the last of ``steps``).
    """
    if isinstance(steps, str) or not steps or not all(
            isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in steps):
        raise ValueError(f"steps must be a list of positive whole numbers of steps, got {steps!r}")
    value = steps[-1] if value is None else value
    if value not in steps:
        raise ValueError(f"value must be one of steps {list(steps)}, got {value!r}")
    drawn = {k: _check_drawn(draw(k), f"{k} steps") for k in steps}

    def figure(ks: Sequence[int]) -> Image.Image:
        cols = min(columns, len(ks))
        lines = -(-len(ks) // cols)
        first = make_grid(drawn[ks[0]], nrow=nrow)
        width, height = first.shape[2] / 60 + 0.9, first.shape[1] / 60 + 0.4  # inches, about 60 pixels each
        fig, axes = plt.subplots(lines, cols, figsize=(cols * width, lines * height), squeeze=False)
        for ax in axes.flat[len(ks):]:
            ax.set_axis_off()
        for ax, k in zip(axes.flat, ks):
            _steps_panel(ax, drawn[k], nrow, f"K = {k} steps", row_labels)
        fig.tight_layout()
        return figure_to_image(fig)

    pngs = {}
    for k in steps:
        buf = io.BytesIO()
        figure([k]).save(buf, format="PNG")
        pngs[k] = buf.getvalue()
    slider = W.SelectionSlider(options=list(steps), value=value, description="steps K", continuous_update=False,
                               layout=W.Layout(width="420px"))
    image = W.Image(value=pngs[value], format="png")

    def on_change(change: dict) -> None:
        image.value = pngs[change["new"]]

    slider.observe(on_change, names="value")
    return Explorer(W.VBox([slider, image]), figure(list(steps)), "Steps explorer (the same seeds, K steps)",
                    slider=slider, image=image)
