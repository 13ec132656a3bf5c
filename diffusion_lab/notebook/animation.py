"""Animations that play as a looping GIF in a live notebook and show as a filmstrip everywhere else
(chapters 01 and 05: noising and sampling trajectories).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from PIL import Image

from diffusion_lab.notebook.figures import LIVE_ONLY, figure_to_image


class Animation:
    """Frames that play as a looping GIF in a live notebook and show as a static filmstrip elsewhere.

    Build one with ``animate(draw, n_frames)``. ``.save("x.gif")`` writes the GIF; ``.filmstrip()``
    returns the static picture that GitHub, a PDF or a saved notebook shows.
    """

    def __init__(self, frames: Sequence[Image.Image], fps: float = 8, strip_frames: int = 6):
        if not frames:
            raise ValueError("an animation needs at least one frame")
        self.frames = list(frames)
        self.fps = fps
        self.strip_frames = strip_frames

    def gif_bytes(self) -> bytes:
        buf = io.BytesIO()
        first, *rest = [f.convert("P", palette=Image.ADAPTIVE, colors=64) for f in self.frames]
        first.save(buf, format="GIF", save_all=True, append_images=rest,
                   duration=int(1000 / self.fps), loop=0, optimize=True)
        return buf.getvalue()

    def filmstrip(self) -> Image.Image:
        """``strip_frames`` frames evenly spread over the animation, three to a row, so that each stays
        large enough to read at a notebook's width."""
        n = min(self.strip_frames, len(self.frames))
        picks = np.linspace(0, len(self.frames) - 1, n).round().astype(int)
        w, h = self.frames[0].size
        cols = min(n, 3)
        rows = -(-n // cols)
        strip = Image.new("RGB", (w * cols, h * rows), "white")
        for k, i in enumerate(picks):
            strip.paste(self.frames[i], ((k % cols) * w, (k // cols) * h))
        return strip

    def save(self, path: str) -> None:
        with open(path, "wb") as f:
            f.write(self.gif_bytes())

    def _repr_mimebundle_(self, include=None, exclude=None):
        buf = io.BytesIO()
        self.filmstrip().save(buf, format="PNG")
        gif = base64.b64encode(self.gif_bytes()).decode("ascii")
        data = {
            "text/plain": f"<Animation: {len(self.frames)} frames; run the notebook to play it>",
            "image/png": base64.b64encode(buf.getvalue()).decode("ascii"),
            "text/html": f'<img src="data:image/gif;base64,{gif}" alt="animation"/>',
        }
        return data, {LIVE_ONLY: ["text/html"]}


def animate(draw: Callable[[Axes, int], None], n_frames: int, *, figsize: tuple[float, float] = (3, 3),
            fps: float = 8) -> Animation:
    """Draw ``n_frames`` frames with ``draw(ax, i)`` and collect them into an ``Animation``."""
    if n_frames < 1:
        raise ValueError(f"n_frames must be at least 1, got {n_frames}")
    frames = []
    for i in range(n_frames):
        fig, ax = plt.subplots(figsize=figsize)
        draw(ax, i)
        fig.tight_layout()
        frames.append(figure_to_image(fig))
    return Animation(frames, fps=fps)
