"""Pictures the chapters draw: image grids, noising strips, schedule curves (chapters 01-02), the
guidance trade-off between fidelity and diversity (chapter 07). Animations are in ``animation.py``.

Images are tensors in [-1, 1], shaped (C, H, W) or batched (B, C, H, W), as everywhere in the course.
Every function returns the matplotlib Figure it drew, so a notebook can show it or save it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image

from diffusion_lab.schedules import NoiseSchedule

# Output metadata key naming the mime types that only make sense while a kernel is live (a widget
# view, a GIF in HTML). tools/build_chapters.py drops them from the saved notebooks, so GitHub and
# a freshly opened notebook show the static picture that is always stored beside them.
LIVE_ONLY = "diffusion_lab_live_only"


def use_course_style() -> None:
    """Figure defaults for the chapters: modest DPI (small notebooks), no top/right spines."""
    matplotlib.rcParams.update(
        {
            "figure.dpi": 80,
            "savefig.dpi": 80,
            "font.size": 10,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": 10,
            "image.interpolation": "nearest",
        }
    )


def to_display(x: torch.Tensor) -> np.ndarray:
    """One image in [-1, 1], (C, H, W) or (H, W), as a float array in [0, 1]: (H, W, 3) or (H, W) for grey."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected an image tensor, got {type(x).__name__}")
    x = x.detach().float().cpu()
    if x.ndim == 3 and x.shape[0] in (1, 3):
        x = x[0] if x.shape[0] == 1 else x.permute(1, 2, 0)
    elif x.ndim != 2:
        raise ValueError(f"expected one image shaped (C, H, W) with C in (1, 3) or (H, W), got {tuple(x.shape)}")
    return ((x.clamp(-1, 1) + 1) / 2).numpy()


def make_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 1.0) -> torch.Tensor:
    """Tile a batch (B, C, H, W) into one image (C, rows * (H + p) + p, nrow * (W + p) + p)."""
    if images.ndim != 4:
        raise ValueError(f"make_grid expects a batch shaped (B, C, H, W), got {tuple(images.shape)}")
    B, C, H, W = images.shape
    ncol = max(1, min(nrow, B))
    nrows = -(-B // ncol)
    grid = torch.full(
        (C, nrows * (H + padding) + padding, ncol * (W + padding) + padding), pad_value, dtype=images.dtype
    )
    for i in range(B):
        r, c = divmod(i, ncol)
        top, left = padding + r * (H + padding), padding + c * (W + padding)
        grid[:, top : top + H, left : left + W] = images[i].detach().cpu()
    return grid


def show_images(
    images: torch.Tensor | Sequence[torch.Tensor],
    nrow: int = 8,
    titles: Sequence[str] | None = None,
    suptitle: str | None = None,
    scale: float = 1.2,
) -> Figure:
    """Show a batch of images (B, C, H, W) in [-1, 1] as a grid, one titled panel each."""
    if not isinstance(images, torch.Tensor):
        images = torch.stack(list(images))
    if images.ndim == 3:
        images = images.unsqueeze(0)
    B = images.shape[0]
    if titles is not None and len(titles) != B:
        raise ValueError(f"got {len(titles)} titles for {B} images")
    ncol = max(1, min(nrow, B))
    nrows = -(-B // ncol)
    fig, axes = plt.subplots(nrows, ncol, figsize=(scale * ncol, scale * nrows + (0.3 if titles else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < B:
            ax.imshow(to_display(images[i]), cmap="gray", vmin=0, vmax=1)
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def png_bytes(x: torch.Tensor, scale: int = 1) -> bytes:
    """Encode one image in [-1, 1] as PNG bytes, enlarged ``scale`` times with crisp pixels."""
    arr = (to_display(x) * 255).round().astype(np.uint8)
    img = Image.fromarray(arr)
    if scale != 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def noising_strip(
    x0: torch.Tensor,
    schedules: NoiseSchedule | Sequence[NoiseSchedule],
    ts: Sequence[int],
    *,
    seed: int = 0,
    scale: float = 1.3,
) -> Figure:
    """x_t for each t in ``ts``, one row per schedule, all rows sharing the same noise eps.

    x0: one image (C, H, W) in [-1, 1]. Each panel is titled with t and alpha_bar_t.
    """
    if isinstance(schedules, NoiseSchedule):
        schedules = [schedules]
    # Drawn on the CPU from an explicit generator (same picture on every device), then moved.
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed)).to(x0.device, x0.dtype)
    fig, axes = plt.subplots(len(schedules), len(ts), figsize=(scale * len(ts), scale * len(schedules) + 0.4),
                             squeeze=False)
    for r, schedule in enumerate(schedules):
        for c, t in enumerate(ts):
            xt = schedule.add_noise(x0, eps, int(t))
            ax = axes[r, c]
            ax.imshow(to_display(xt), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"t={t}\nᾱ={float(schedule.alpha_bars[t]):.2g}", fontsize=8)
            if c == 0:
                ax.set_ylabel(schedule.name)
    fig.tight_layout()
    return fig


def plot_schedules(schedules: Sequence[NoiseSchedule]) -> Figure:
    """Two panels against t / T: alpha_bar_t (how much signal survives) and log SNR(t)."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    for s in schedules:
        u = torch.arange(s.T) / s.T
        ax1.plot(u, s.alpha_bars.cpu(), label=s.name)
        ax2.plot(u, s.log_snr(torch.arange(s.T)).cpu(), label=s.name)
    ax1.set(xlabel="t / T", ylabel="ᾱ_t", title="signal kept: ᾱ_t")
    ax2.set(xlabel="t / T", ylabel="log SNR(t)", title="log signal-to-noise ratio")
    ax2.axhline(0, color="grey", lw=0.8, ls="--")
    ax2.annotate("SNR = 1", (0.78, 0.6), color="grey", fontsize=8)
    ax1.legend()
    fig.tight_layout()
    return fig


def plot_points(points: torch.Tensor, ax: Axes | None = None, title: str | None = None, lim: float = 3.5,
                **scatter_kwargs) -> Axes:
    """Scatter 2-D points (N, 2) on square axes from -lim to lim."""
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"plot_points expects (N, 2) points, got {tuple(points.shape)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(3, 3))
    kwargs = {"s": 2, "alpha": 0.5, **scatter_kwargs}
    ax.scatter(points[:, 0].cpu(), points[:, 1].cpu(), **kwargs)
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
    if title:
        ax.set_title(title)
    return ax


def plot_fidelity_diversity(scales: Sequence[float], fidelity: Sequence[float], diversity: Sequence[float], *,
                            ax: Axes | None = None, label: str | None = None, fidelity_name: str = "accuracy",
                            diversity_name: str = "diversity", chance: float | None = None,
                            scale_name: str = "w", min_gap: float = 0.12) -> Figure:
    """The guidance trade-off (chapter 07): one point per guidance scale, diversity across, fidelity up.

    scales, fidelity, diversity: one value per scale of a sweep (lists or 1-D tensors). Each point is
    labelled with its scale, except points crowded (closer than ``min_gap``, in fractions of the curve's
    extent) against an already labelled one; the first and last scales are always labelled. ``chance``
    draws the fidelity of random guessing as a dashed line; ``scale_name`` is the scale's symbol in the
    labels ("w", or "s" for classifier guidance). Draws on ``ax`` when given (to put several sweeps side
    by side) and returns the Figure.
    """
    values = [[float(v) for v in (x.tolist() if isinstance(x, torch.Tensor) else x)]
              for x in (scales, fidelity, diversity)]
    if not values[0] or len({len(v) for v in values}) != 1:
        raise ValueError(f"need one fidelity and one diversity per scale, got {len(values[0])} scales, "
                         f"{len(values[1])} fidelities and {len(values[2])} diversities")
    scales_, fidelity_, diversity_ = values
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.2))
    (line,) = ax.plot(diversity_, fidelity_, marker="o", label=label)
    # Label the first and last scale, and those in between that are not crowded against a labelled one
    # (guidance often saturates, piling the last points on top of each other).
    span_d = (max(diversity_) - min(diversity_)) or 1.0
    span_f = (max(fidelity_) - min(fidelity_)) or 1.0
    labelled: list[tuple[float, float]] = []
    last = len(scales_) - 1
    for i in [0, last, *range(1, last)]:
        w, f, d = scales_[i], fidelity_[i], diversity_[i]
        if i not in (0, last) and any(math.hypot((d - d2) / span_d, (f - f2) / span_f) < min_gap
                                      for d2, f2 in labelled):
            continue
        labelled.append((d, f))
        right_half = (d - min(diversity_)) / span_d > 0.5  # label towards the middle, so none leaves the axes
        ax.annotate(f"{scale_name}={w:g}", (d, f), textcoords="offset points", xytext=(-4 if right_half else 4, -10),
                    ha="right" if right_half else "left", fontsize=7, color=line.get_color())
    if chance is not None:
        ax.axhline(chance, color="grey", ls="--", lw=0.8)
        ax.annotate("chance", (ax.get_xlim()[0], chance), textcoords="offset points", xytext=(2, 3),
                    fontsize=7, color="grey")
    ax.set(xlabel=f"{diversity_name} (more varied →)", ylabel=f"{fidelity_name} (more faithful ↑)")
    if label is not None:
        ax.legend(fontsize=8)
    return ax.figure


def figure_to_image(fig: Figure) -> Image.Image:
    """Render a matplotlib figure to a PIL image (and close it)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    buf.seek(0)
    return Image.open(buf).convert("RGB")
