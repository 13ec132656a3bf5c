"""The /imagine front end (chapter 11): a prompt box, the grid of four, U1-U4, V1-V4, re-roll, remix and a
history of jobs, as Midjourney's users drive it.

    app = ImagineApp(prompt="a red circle to the left of a blue square --seed 3")
    app            # in a notebook: the live front end; press "imagine", then U2, V3, ...

It is a thin layer over ``diffusion_lab.pipelines.imagine``: every button calls one function there (imagine,
upscale, vary, remix, reroll) and shows the job it returns, so what the buttons do is exactly what the API
does. ``app.jobs`` holds every job made, oldest first; ``app.job`` is the grid the buttons act on. A bad
prompt or a failed action is one short line under the box; the pictures already drawn stay.

Where no widget front end runs (GitHub, a PDF, a notebook opened before its cells are run) the app shows a
static picture of its current grid instead. Chapter 11 shows it in JupyterLab; ``apps/imagine.ipynb`` shows
it alone as a web page (``python3 course.py imagine``, with Voila).
"""

from __future__ import annotations

import base64
import html
import io
import time
from collections.abc import Callable
from pathlib import Path

import ipywidgets as W
import numpy as np
import torch
from PIL import Image

from diffusion_lab.notebook.figures import LIVE_ONLY
from diffusion_lab.notebook.widgets import WIDGET_MIME
from diffusion_lab.pipelines.imagine import GRID, Job, imagine, remix, reroll, upscale, vary
from diffusion_lab.pipelines.text_to_image import TinySDPipeline
from diffusion_lab.pretrained import Pretrained

EXAMPLE = "a red circle to the left of a blue square --seed 3"
PICTURE_PX, ENLARGED_PX = 192, 256  # how big a grid picture and an upscaled picture are shown


def picture_png(image: np.ndarray, px: int) -> bytes:
    """One uint8 picture (H, W, 3) as PNG bytes, enlarged a whole number of times (square pixels) to at least
    ``px`` wide."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected one uint8 picture (H, W, 3), got {getattr(image, 'shape', type(image).__name__)}")
    scale = max(1, -(-px // image.shape[1]))
    buf = io.BytesIO()
    Image.fromarray(image).resize((image.shape[1] * scale, image.shape[0] * scale), Image.NEAREST).save(buf, "PNG")
    return buf.getvalue()


def grid_picture(job: Job, gap: int = 2) -> Image.Image:
    """The job's pictures as one image: a 2x2 grid for four (as Midjourney shows them), one picture alone."""
    images = job.images
    if len(images) == 1:
        return Image.fromarray(images[0])
    n, h, w, _ = images.shape
    rows = (n + 1) // 2
    out = Image.new("RGB", (2 * w + gap, rows * h + (rows - 1) * gap), "white")
    for k, picture in enumerate(images):
        out.paste(Image.fromarray(picture), ((k % 2) * (w + gap), (k // 2) * (h + gap)))
    return out


class ImagineApp:
    """The /imagine widget. Named parts, for code and tests that drive it as a learner would: ``prompt`` (Text),
    ``imagine_button``, ``pictures`` (four Images), ``upscale_buttons`` (U1-U4), ``vary_buttons`` (V1-V4),
    ``reroll_button`` (🔄, re-roll), ``strength`` ("subtle" / "strong"), ``remix`` (Checkbox: V uses the prompt box),
    ``enlarged`` (the last upscale), ``status`` (HTML), ``history`` (Select over ``jobs``).

    pipeline, upsampler, root, device: passed on to the API (default: the shipped tiny_sd and upsampler).
    job: a job made with the API, shown from the start (and in the static picture)."""

    def __init__(self, *, prompt: str = "", job: Job | None = None, pipeline: TinySDPipeline | None = None,
                 upsampler: Pretrained | None = None, root: str | Path | None = None,
                 device: torch.device | str | None = None):
        self._models = {"pipeline": pipeline, "root": root, "device": device}
        self._upsampler = upsampler
        self.jobs: list[Job] = []
        self.job: Job | None = None
        self.prompt = W.Text(value=prompt, placeholder=EXAMPLE, description="/imagine",
                             layout=W.Layout(width="560px"))
        self.imagine_button = W.Button(description="imagine", button_style="primary",
                                       tooltip="draw four pictures of the prompt (or press Enter in the box)")
        self.pictures = [W.Image(format="png", layout=W.Layout(width=f"{PICTURE_PX}px", height=f"{PICTURE_PX}px",
                                                               border="1px solid #ddd")) for _ in range(GRID)]
        for picture in self.pictures:
            picture.add_class("imagine-picture")
        self.upscale_buttons = [W.Button(description=f"U{k}", tooltip=f"upscale picture {k}: 64 -> 128 pixels",
                                         layout=W.Layout(width="56px")) for k in range(1, GRID + 1)]
        self.vary_buttons = [W.Button(description=f"V{k}", tooltip=f"four variations of picture {k}",
                                      layout=W.Layout(width="56px")) for k in range(1, GRID + 1)]
        # 🔄 as an icon and a word: a browser without an emoji font shows an empty box for the character, and
        # Voila fetches the icon font from a CDN, so offline (a workshop's Wi-Fi) the word is what shows
        self.reroll_button = W.Button(description="re-roll", icon="refresh", layout=W.Layout(width="96px"),
                                      tooltip="re-roll (🔄): the same prompt and settings, new seeds")
        self.strength = W.ToggleButtons(options=["subtle", "strong"], value="subtle",
                                        tooltips=["variations keep the picture's layout", "variations move further"],
                                        style={"button_width": "64px"})
        self.remix = W.Checkbox(value=False, description="remix (V draws the prompt box's text)", indent=False)
        self.enlarged = W.Image(format="png", layout=W.Layout(width=f"{ENLARGED_PX}px", height=f"{ENLARGED_PX}px",
                                                             display="none"))
        self.enlarged.add_class("imagine-enlarged")
        self.status = W.HTML("type a prompt, then press <b>imagine</b>")
        self.history = W.Select(options=[], rows=6, description="history", layout=W.Layout(width="560px"))

        self.imagine_button.on_click(lambda _: self._act("imagine", lambda: imagine(self.prompt.value,
                                                                                    **self._models)))
        # Enter in the box: the front end sends "submit" (watching the value instead would draw twice, once as
        # the box loses focus to the imagine button and once for the click)
        self.prompt.on_msg(lambda _, content, __: self.imagine_button.click()
                           if isinstance(content, dict) and content.get("event") == "submit" else None)
        self.reroll_button.on_click(lambda _: self._act("re-roll", lambda: reroll(self._grid(), **self._models)))
        for k, (u, v) in enumerate(zip(self.upscale_buttons, self.vary_buttons), start=1):
            u.on_click(lambda _, k=k: self._act(f"U{k}", lambda: upscale(self._grid(), k, upsampler=self._upsampler,
                                                                          root=self._models["root"],
                                                                          device=self._models["device"])))
            v.on_click(lambda _, k=k: self._act(f"V{k}", lambda: self._vary(k)))
        self.history.observe(self._on_history, names="index")

        grid = W.GridBox(self.pictures, layout=W.Layout(grid_template_columns=f"repeat(2, {PICTURE_PX}px)",
                                                        grid_gap="4px"))
        self.widget = W.VBox([
            W.HBox([self.prompt, self.imagine_button]), self.status,
            W.HBox([grid, self.enlarged], layout=W.Layout(align_items="flex-start", grid_gap="12px")),
            W.HBox([*self.upscale_buttons, self.reroll_button]),
            W.HBox([*self.vary_buttons, self.strength, self.remix]),
            self.history,
        ])
        self.widget.add_class("imagine-app")
        self._enable(True)
        if job is not None:
            self._show(job, "")

    # ----- what the buttons do ------------------------------------------------------------------------------

    def _grid(self) -> Job:
        if self.job is None:
            raise ValueError("there is no grid yet: type a prompt and press imagine first")
        return self.job

    def _vary(self, k: int) -> Job:
        if self.remix.value:  # Midjourney's remix mode: the variation follows the edited prompt
            return remix(self._grid(), k, self.prompt.value, strength=self.strength.value, **self._models)
        return vary(self._grid(), k, self.strength.value, **self._models)

    def _act(self, name: str, action: Callable[[], Job]) -> None:
        """Run one action; show its job, or its error in one line (the pictures already drawn stay)."""
        self._enable(False)
        self.status.value = f"{html.escape(name)}: drawing ..."
        started = time.perf_counter()
        try:
            job = action()
        except ValueError as err:
            self.status.value = f"<span style='color:#b00'>{html.escape(str(err))}</span>"
            return
        finally:
            self._enable(True)
        self._show(job, f" in {time.perf_counter() - started:.1f} s")

    def _show(self, job: Job, took: str) -> None:
        """Add ``job`` to the history and show it: a grid in the four pictures, an upscale enlarged."""
        self.jobs.append(job)
        self._display(job)
        self.history.unobserve(self._on_history, names="index")
        self.history.options = [f"{i + 1}. {j.describe()}" for i, j in enumerate(self.jobs)]
        self.history.index = len(self.jobs) - 1
        self.history.observe(self._on_history, names="index")
        self.status.value = f"{html.escape(job.describe())}{took}"
        self._enable(True)

    def _display(self, job: Job) -> None:
        if job.action == "upscale":
            self.enlarged.value = picture_png(job.images[0], ENLARGED_PX)
            self.enlarged.layout.display = None
            if job.parent is not None and job.parent is not self.job:
                self._display(job.parent)
            return
        self.job = job
        for picture, image in zip(self.pictures, job.images):
            picture.value = picture_png(image, PICTURE_PX)

    def _on_history(self, change: dict) -> None:
        """Picking an older job shows it again; the buttons then act on it."""
        if change["new"] is not None and 0 <= change["new"] < len(self.jobs):
            job = self.jobs[change["new"]]
            self._display(job)
            self.status.value = f"from the history: {html.escape(job.describe())}"
            self._enable(True)

    def _enable(self, on: bool) -> None:
        """While an action runs every button is off; afterwards U, V and 🔄 need a grid."""
        self.imagine_button.disabled = not on
        for button in (*self.upscale_buttons, *self.vary_buttons, self.reroll_button):
            button.disabled = not on or self.job is None

    # ----- showing it ---------------------------------------------------------------------------------------

    def static_picture(self) -> Image.Image | None:
        """What a saved notebook shows: the current grid, with the last upscale beside it (None before any)."""
        if self.job is None:
            return None
        grid = grid_picture(self.job)
        ups = [j for j in self.jobs if j.action == "upscale"]
        if not ups:
            return grid
        big = Image.fromarray(ups[-1].images[0])
        out = Image.new("RGB", (grid.width + 8 + big.width, max(grid.height, big.height)), "white")
        out.paste(grid, (0, 0))
        out.paste(big, (grid.width + 8, 0))
        return out

    def _repr_mimebundle_(self, include=None, exclude=None):
        data = dict(self.widget._repr_mimebundle_())
        shown = f": {self.job.describe()}" if self.job is not None else ""
        data["text/plain"] = f"/imagine{shown} (run the notebook to use the live version)"
        picture = self.static_picture()
        if picture is not None:
            buf = io.BytesIO()
            picture.save(buf, format="PNG")
            data["image/png"] = base64.b64encode(buf.getvalue()).decode("ascii")
        return data, {LIVE_ONLY: [WIDGET_MIME]}
