"""Interactive explorers: the forward process and its schedules (chapters 01 and 02), prompts (chapter 06),
image-to-image strength (chapter 08); chapter 09's steps explorer is in ``steps_explorer.py``.

Each explorer is an ipywidgets layout wrapped in an ``Explorer`` that also carries a static
picture. In a live notebook you get the slider or the text box; where no widget front end runs
(GitHub, a PDF, a notebook opened before its cells are run) the static picture shows instead.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Sequence

import ipywidgets as W
import matplotlib.pyplot as plt
import torch
from PIL import Image

from diffusion_lab.notebook.figures import (
    LIVE_ONLY,
    figure_to_image,
    make_grid,
    noising_strip,
    plot_schedules,
    png_bytes,
    to_display,
)
from diffusion_lab.schedules import NoiseSchedule

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


class Explorer:
    """A widget plus the static picture shown where widgets cannot run.

    ``.widget`` is the ipywidgets layout; named parts (``.slider``, ``.image`` ...) are exposed as
    attributes so code and tests can drive the explorer as a learner would.
    """

    def __init__(self, widget: W.Widget, fallback: Image.Image, description: str, **parts: W.Widget):
        self.widget = widget
        self.fallback = fallback
        self.description = description
        for name, part in parts.items():
            setattr(self, name, part)

    def _repr_mimebundle_(self, include=None, exclude=None):
        buf = io.BytesIO()
        self.fallback.save(buf, format="PNG")
        data = dict(self.widget._repr_mimebundle_())
        data["text/plain"] = f"{self.description} (run the notebook to use the live version)"
        data["image/png"] = base64.b64encode(buf.getvalue()).decode("ascii")
        return data, {LIVE_ONLY: [WIDGET_MIME]}


def _check_image(x0: torch.Tensor) -> torch.Tensor:
    if not isinstance(x0, torch.Tensor) or x0.ndim != 3 or x0.shape[0] not in (1, 3):
        shape = tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__
        raise ValueError(f"the explorer expects one image shaped (C, H, W) with C = 1 or 3, got {shape}")
    return x0.detach().float().cpu()


def _caption(schedule: NoiseSchedule, t: int) -> str:
    abar = float(schedule.alpha_bars[t])
    return (
        f"<b>t = {t}</b> &nbsp; ᾱ<sub>t</sub> = {abar:.3f} &nbsp; "
        f"signal √ᾱ = {abar ** 0.5:.2f} &nbsp; noise √(1−ᾱ) = {(1 - abar) ** 0.5:.2f} &nbsp; "
        f"SNR = {float(schedule.snr(t)):.3g}"
    )


def timestep_explorer(x0: torch.Tensor, schedule: NoiseSchedule, *, t: int = 0, seed: int = 0,
                      scale: int = 3) -> Explorer:
    """A slider over t showing x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, with one fixed eps.

    x0: one image (C, H, W) in [-1, 1]; the image is enlarged ``scale`` times.
    """
    x0 = _check_image(x0)
    schedule.check_t(t)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))

    def render(step: int) -> bytes:
        return png_bytes(schedule.add_noise(x0, eps, step), scale=scale)

    slider = W.IntSlider(value=t, min=0, max=schedule.T - 1, step=1, description="t",
                         continuous_update=True, layout=W.Layout(width="420px"))
    # An explicit width: left to itself, the image would stretch to the notebook's full width.
    image = W.Image(value=render(t), format="png", layout=W.Layout(width=f"{x0.shape[-1] * scale}px"))
    caption = W.HTML(_caption(schedule, t))

    def on_change(change: dict) -> None:
        image.value = render(change["new"])
        caption.value = _caption(schedule, change["new"])

    slider.observe(on_change, names="value")
    ts = [round(f * (schedule.T - 1)) for f in (0, 0.1, 0.25, 0.5, 0.75, 1.0)]
    fallback = figure_to_image(noising_strip(x0, schedule, ts, seed=seed))
    box = W.VBox([slider, caption, image])
    return Explorer(box, fallback, f"Timestep explorer ({schedule.name} schedule, T={schedule.T})",
                    slider=slider, image=image, caption=caption)


def _schedule_figure(schedules: dict[str, NoiseSchedule], name: str, t: int, xt: torch.Tensor) -> Image.Image:
    fig, (ax_img, ax_curve) = plt.subplots(1, 2, figsize=(7, 2.8), gridspec_kw={"width_ratios": [1, 1.6]})
    ax_img.imshow(to_display(xt), cmap="gray", vmin=0, vmax=1)
    ax_img.set_axis_off()
    ax_img.set_title(f"{name}, t = {t}")
    for other, s in schedules.items():
        u = torch.arange(s.T) / s.T
        ax_curve.plot(u, s.alpha_bars, lw=2.5 if other == name else 1, alpha=1 if other == name else 0.4,
                      label=other)
    s = schedules[name]
    ax_curve.plot([t / s.T], [float(s.alpha_bars[t])], "o", color="black")
    ax_curve.set(xlabel="t / T", ylabel="ᾱ_t", ylim=(-0.02, 1.02))
    ax_curve.legend(fontsize=8)
    fig.tight_layout()
    return figure_to_image(fig)


def schedule_explorer(x0: torch.Tensor, names: Sequence[str] = ("linear", "cosine", "sigmoid"), *,
                      T: int = 1000, t: int | None = None, seed: int = 0) -> Explorer:
    """Pick a schedule and a step: see x_t under that schedule beside every schedule's alpha_bar curve."""
    x0 = _check_image(x0)
    if not names:
        raise ValueError("schedule_explorer needs at least one schedule name")
    schedules = {n: NoiseSchedule.from_name(n, T) for n in names}
    t = T // 2 if t is None else t
    schedules[names[0]].check_t(t)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))

    def render(name: str, step: int) -> bytes:
        xt = schedules[name].add_noise(x0, eps, step)
        buf = io.BytesIO()
        _schedule_figure(schedules, name, step, xt).save(buf, format="PNG")
        return buf.getvalue()

    chooser = W.ToggleButtons(options=list(names), value=names[0], description="schedule")
    slider = W.IntSlider(value=t, min=0, max=T - 1, description="t", continuous_update=False,
                         layout=W.Layout(width="420px"))
    first = render(names[0], t)
    image = W.Image(value=first, format="png", layout=W.Layout(width=f"{Image.open(io.BytesIO(first)).width}px"))

    def on_change(_change: dict) -> None:
        image.value = render(chooser.value, slider.value)

    chooser.observe(on_change, names="value")
    slider.observe(on_change, names="value")
    ts = [round(f * (T - 1)) for f in (0, 0.25, 0.5, 0.75, 0.9)]
    strip = figure_to_image(noising_strip(x0, list(schedules.values()), ts, seed=seed))
    curves = figure_to_image(plot_schedules(list(schedules.values())))
    fallback = Image.new("RGB", (max(strip.width, curves.width), strip.height + curves.height), "white")
    fallback.paste(curves, (0, 0))
    fallback.paste(strip, (0, curves.height))
    box = W.VBox([chooser, slider, image])
    return Explorer(box, fallback, f"Schedule explorer ({', '.join(names)})",
                    chooser=chooser, slider=slider, image=image)


def _check_drawn(images: object, prompt: str) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"draw({prompt!r}) must return images shaped (N, C, H, W) with C = 1 or 3, got {got}")
    return images.detach().float().cpu()


def _prompts_figure(drawn: Sequence[tuple[str, torch.Tensor]], nrow: int) -> Image.Image:
    """One row per prompt: its images side by side, the prompt above them."""
    grids = [make_grid(images[:nrow], nrow=nrow) for _, images in drawn]
    height, width = grids[0].shape[1] / 40, grids[0].shape[2] / 40  # inches at about 40 image pixels per inch
    fig, axes = plt.subplots(len(drawn), 1, figsize=(max(3.0, width), len(drawn) * (height + 0.35)), squeeze=False)
    for ax, (prompt, _), grid in zip(axes[:, 0], drawn, grids):
        ax.imshow(to_display(grid), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"“{prompt}”", fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    return figure_to_image(fig)


def prompt_explorer(draw: Callable[[str], torch.Tensor], examples: Sequence[str], *, nrow: int = 8,
                    scale: int = 3) -> Explorer:
    """A text box for prompts: type one, press Enter (or the button) and see what ``draw(prompt)`` makes.

    draw: prompt -> images (N, C, H, W) in [-1, 1], e.g. ``lambda p: generate(model, 4, prompt=p, steps=20)``.
    A ValueError it raises (an unknown word, an empty prompt) is shown under the box, and the last
    picture stays. examples: prompts drawn now, at most ``nrow`` images each, for the static picture
    shown where widgets cannot run; the first one fills the box. Images are enlarged ``scale`` times.
    """
    if isinstance(examples, str) or not examples or not all(isinstance(p, str) for p in examples):
        raise ValueError(f"prompt_explorer needs a list of example prompts, got {examples!r}")
    drawn = [(p, _check_drawn(draw(p), p)) for p in examples]

    def render(images: torch.Tensor) -> bytes:
        return png_bytes(make_grid(images[:nrow], nrow=nrow), scale=scale)

    text = W.Text(value=examples[0], description="prompt", continuous_update=False,
                  layout=W.Layout(width="420px"))
    button = W.Button(description="draw", tooltip="draw the prompt (or press Enter in the box)")
    image = W.Image(value=render(drawn[0][1]), format="png")
    status = W.HTML(f"<i>{html.escape(examples[0])}</i>")

    def on_prompt(_change: object = None) -> None:
        prompt = text.value
        status.value = f"drawing <i>{html.escape(prompt)}</i> ..."
        try:
            images = _check_drawn(draw(prompt), prompt)
        except ValueError as err:
            status.value = f"<span style='color:#b00'>{html.escape(str(err))}</span>"
            return
        image.value = render(images)
        status.value = f"<i>{html.escape(prompt)}</i>"

    text.observe(on_prompt, names="value")  # with continuous_update=False: on Enter or on leaving the box
    button.on_click(on_prompt)
    box = W.VBox([W.HBox([text, button]), status, image])
    return Explorer(box, _prompts_figure(drawn, nrow), f"Prompt explorer ({len(examples)} example prompts)",
                    text=text, button=button, image=image, status=status)


def _strength_figure(drawn: Sequence[tuple[float, torch.Tensor]], nrow: int) -> Image.Image:
    """One row per strength: the varied pictures side by side, the strength at the left."""
    grids = [make_grid(images[:nrow], nrow=nrow) for _, images in drawn]
    height, width = grids[0].shape[1] / 40, grids[0].shape[2] / 40
    fig, axes = plt.subplots(len(drawn), 1, figsize=(max(3.0, width + 0.8), len(drawn) * max(0.6, height + 0.1)),
                             squeeze=False)
    for ax, (strength, _), grid in zip(axes[:, 0], drawn, grids):
        ax.imshow(to_display(grid), cmap="gray", vmin=0, vmax=1)
        ax.set_ylabel(f"{strength:g}", rotation=0, ha="right", va="center", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    fig.suptitle("strength", x=0.02, ha="left", fontsize=9)
    fig.tight_layout()
    return figure_to_image(fig)


def strength_explorer(vary: Callable[[float], torch.Tensor], strengths: Sequence[float] = (0.2, 0.4, 0.6, 0.8, 1.0),
                      *, value: float = 0.5, nrow: int = 8, scale: int = 3) -> Explorer:
    """A slider over an image-to-image strength (chapter 08's SDEdit, chapter 11's "vary").

    vary: strength in [0, 1] -> pictures (N, C, H, W) in [-1, 1], e.g. the input first, then its variations.
    strengths: drawn now, one row each, for the static picture shown where widgets cannot run.
    """
    if isinstance(strengths, str) or not strengths or not all(
            isinstance(s, int | float) and not isinstance(s, bool) and 0 <= s <= 1 for s in strengths):
        raise ValueError(f"strengths must be a list of numbers from 0 to 1, got {strengths!r}")
    drawn = [(float(s), _check_drawn(vary(s), f"strength {s}")) for s in strengths]

    def render(images: torch.Tensor) -> bytes:
        return png_bytes(make_grid(images[:nrow], nrow=nrow), scale=scale)

    slider = W.FloatSlider(value=value, min=0.0, max=1.0, step=0.05, description="strength", continuous_update=False,
                           readout_format=".2f", layout=W.Layout(width="420px"))
    image = W.Image(value=render(_check_drawn(vary(value), f"strength {value}")), format="png")

    def on_change(change: dict) -> None:
        image.value = render(_check_drawn(vary(change["new"]), f"strength {change['new']}"))

    slider.observe(on_change, names="value")
    box = W.VBox([slider, image])
    return Explorer(box, _strength_figure(drawn, nrow), "Strength explorer (image-to-image)", slider=slider,
                    image=image)
