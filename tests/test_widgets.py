"""Tests for diffusion_lab.notebook.widgets: explorers react to their controls and carry a static fallback."""

from __future__ import annotations

import base64
import importlib
import io
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from diffusion_lab.notebook.figures import LIVE_ONLY  # noqa: E402
from diffusion_lab.notebook.steps_explorer import steps_explorer  # noqa: E402
from diffusion_lab.notebook.widgets import (  # noqa: E402
    WIDGET_MIME,
    Explorer,
    prompt_explorer,
    schedule_explorer,
    strength_explorer,
    timestep_explorer,
)
from diffusion_lab.schedules import NoiseSchedule  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _strip_live_only(nb: nbformat.NotebookNode) -> int:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module("tools.notebooks").strip_live_only(nb)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def x0() -> torch.Tensor:
    return torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1  # (C, H, W)


@pytest.fixture(scope="module")
def schedule() -> NoiseSchedule:
    return NoiseSchedule.from_name("linear", 50)


def _caption_t(html: str) -> int:
    match = re.search(r"t = (\d+)", html)
    assert match, html
    return int(match.group(1))


# ----- timestep_explorer -------------------------------------------------------------------------

def test_timestep_explorer_slider_drives_image_and_caption(x0: torch.Tensor, schedule: NoiseSchedule) -> None:
    ex = timestep_explorer(x0, schedule, t=0, scale=2)
    assert isinstance(ex, Explorer)
    assert (ex.slider.min, ex.slider.max, ex.slider.value) == (0, schedule.T - 1, 0)
    first = ex.image.value
    assert Image.open(io.BytesIO(first)).size == (16, 16)  # 8 x 8 enlarged twice
    assert _caption_t(ex.caption.value) == 0

    ex.slider.value = 25
    assert ex.image.value != first
    assert _caption_t(ex.caption.value) == 25
    assert f"{float(schedule.alpha_bars[25]):.3f}" in ex.caption.value

    ex.slider.value = 0
    assert ex.image.value == first  # the same fixed eps: going back shows the same picture


def test_timestep_explorer_starts_at_t(x0: torch.Tensor, schedule: NoiseSchedule) -> None:
    ex = timestep_explorer(x0, schedule, t=30)
    assert ex.slider.value == 30
    assert _caption_t(ex.caption.value) == 30


def test_timestep_explorer_rgb(schedule: NoiseSchedule) -> None:
    ex = timestep_explorer(torch.zeros(3, 4, 4), schedule, scale=1)
    assert Image.open(io.BytesIO(ex.image.value)).mode == "RGB"


def test_timestep_explorer_mimebundle(x0: torch.Tensor, schedule: NoiseSchedule) -> None:
    ex = timestep_explorer(x0, schedule)
    data, metadata = ex._repr_mimebundle_()
    assert WIDGET_MIME in data
    assert data[WIDGET_MIME]["model_id"] == ex.widget.model_id
    assert "run the notebook" in data["text/plain"]
    png = Image.open(io.BytesIO(base64.b64decode(data["image/png"])))
    assert png.format == "PNG"
    assert png.size == ex.fallback.size
    assert metadata == {LIVE_ONLY: [WIDGET_MIME]}


def test_strip_live_only_keeps_the_static_picture(x0: torch.Tensor, schedule: NoiseSchedule) -> None:
    data, metadata = timestep_explorer(x0, schedule)._repr_mimebundle_()
    output = nbformat.v4.new_output("display_data", data=data, metadata=metadata)
    other = nbformat.v4.new_output("stream", name="stdout", text="hello\n")
    cell = nbformat.v4.new_code_cell("timestep_explorer(x0, schedule)", outputs=[other, output])
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# title"), cell])

    assert _strip_live_only(nb) == 1

    kept = nb.cells[1].outputs[1]
    assert set(kept.data) == set(data) - {WIDGET_MIME}
    assert "image/png" in kept.data and "text/plain" in kept.data
    assert kept.data["image/png"] == data["image/png"]
    assert LIVE_ONLY not in kept.metadata
    assert nb.cells[1].outputs[0].text == "hello\n"
    nbformat.validate(nb)
    assert _strip_live_only(nb) == 0  # a second pass finds nothing left to drop


def test_strip_live_only_drops_progress_bars() -> None:
    """tqdm.auto's bar is a widget whose text fallback is its first state: the saved notebook drops it."""
    bar = nbformat.v4.new_output("display_data", data={
        WIDGET_MIME: {"model_id": "abc", "version_major": 2, "version_minor": 0},
        "text/plain": "training:   0%|          | 0/300 [00:00<?, ?it/s]"})
    done = nbformat.v4.new_output("stream", name="stdout", text="trained 300 steps in 5 s\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("train(...)", outputs=[bar, done])])

    assert _strip_live_only(nb) == 1
    assert [o.output_type for o in nb.cells[0].outputs] == ["stream"]
    nbformat.validate(nb)


# ----- schedule_explorer -------------------------------------------------------------------------

def test_schedule_explorer_controls_change_the_image(x0: torch.Tensor) -> None:
    ex = schedule_explorer(x0, ("linear", "cosine"), T=100, t=40)
    assert list(ex.chooser.options) == ["linear", "cosine"]
    assert (ex.chooser.value, ex.slider.value, ex.slider.max) == ("linear", 40, 99)
    seen = [ex.image.value]

    ex.chooser.value = "cosine"
    seen.append(ex.image.value)
    ex.slider.value = 90
    seen.append(ex.image.value)
    ex.chooser.value = "linear"
    seen.append(ex.image.value)

    assert len(set(seen)) == 4
    data, metadata = ex._repr_mimebundle_()
    assert WIDGET_MIME in data and "image/png" in data
    assert metadata == {LIVE_ONLY: [WIDGET_MIME]}


def test_schedule_explorer_default_t_is_middle(x0: torch.Tensor) -> None:
    ex = schedule_explorer(x0, ("sigmoid",), T=20)
    assert ex.slider.value == 10


# ----- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [torch.zeros(2, 1, 8, 8), torch.zeros(8, 8), torch.zeros(2, 8, 8)])
def test_explorers_reject_non_images(bad: torch.Tensor, schedule: NoiseSchedule) -> None:
    with pytest.raises(ValueError, match=r"one image shaped \(C, H, W\)"):
        timestep_explorer(bad, schedule)
    with pytest.raises(ValueError, match=r"one image shaped \(C, H, W\)"):
        schedule_explorer(bad, T=20)


def test_explorers_reject_non_tensor(schedule: NoiseSchedule) -> None:
    with pytest.raises(ValueError, match="got list"):
        timestep_explorer([[0.0]], schedule)  # type: ignore[arg-type]


@pytest.mark.parametrize("t", [-1, 50])
def test_timestep_explorer_t_out_of_range(x0: torch.Tensor, schedule: NoiseSchedule, t: int) -> None:
    with pytest.raises(ValueError, match=r"t must lie in 0\.\.49"):
        timestep_explorer(x0, schedule, t=t)


@pytest.mark.parametrize("t", [-1, 20])
def test_schedule_explorer_t_out_of_range(x0: torch.Tensor, t: int) -> None:
    with pytest.raises(ValueError, match=r"t must lie in 0\.\.19"):
        schedule_explorer(x0, T=20, t=t)


@pytest.mark.parametrize("names", [(), []])
def test_schedule_explorer_needs_names(x0: torch.Tensor, names) -> None:
    with pytest.raises(ValueError, match="at least one schedule name"):
        schedule_explorer(x0, names)


def test_schedule_explorer_unknown_name(x0: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="unknown schedule 'nope'"):
        schedule_explorer(x0, ("linear", "nope"), T=20)


# ----- prompt_explorer ---------------------------------------------------------------------------

def _fake_draw(prompt: str) -> torch.Tensor:
    """Two 4x4 RGB 'samples' whose brightness depends on the prompt; 'dragon' is not a known word."""
    if "dragon" in prompt:
        raise ValueError(f"unknown word 'dragon' in the prompt {prompt!r}")
    if not prompt.strip():
        raise ValueError("the prompt '' has no words; describe the picture")
    return torch.full((2, 3, 4, 4), (len(prompt) % 20) / 10 - 1)


def test_prompt_explorer_draws_typed_prompts() -> None:
    calls: list[str] = []

    def draw(prompt: str) -> torch.Tensor:
        calls.append(prompt)
        return _fake_draw(prompt)

    ex = prompt_explorer(draw, ["a red circle", "a large blue square"], scale=2)
    assert isinstance(ex, Explorer)
    assert calls == ["a red circle", "a large blue square"]  # the examples are drawn for the static picture
    assert ex.text.value == "a red circle"
    first = ex.image.value
    assert Image.open(io.BytesIO(first)).size == (2 * (2 * 4 + 3 * 2), 2 * (4 + 2 * 2))  # 2 images, padding 2

    ex.text.value = "a small green triangle"  # what pressing Enter in the box does
    assert calls[-1] == "a small green triangle"
    assert ex.image.value != first
    assert "a small green triangle" in ex.status.value

    ex.button.click()  # draws the box's prompt again
    assert calls[-1] == "a small green triangle" and len(calls) == 4


def test_prompt_explorer_shows_errors_and_keeps_the_picture() -> None:
    ex = prompt_explorer(_fake_draw, ["a red circle"])
    before = ex.image.value
    ex.text.value = "a green dragon"
    assert "unknown word" in ex.status.value and "dragon" in ex.status.value
    assert ex.image.value == before
    ex.text.value = "<b>"  # the message is escaped, not rendered as HTML
    assert "<b>" not in ex.status.value.replace("<i>", "").replace("</i>", "")


def test_prompt_explorer_mimebundle_has_a_static_picture() -> None:
    ex = prompt_explorer(_fake_draw, ["a red circle", "a blue square", "a cross"])
    data, metadata = ex._repr_mimebundle_()
    assert WIDGET_MIME in data and metadata == {LIVE_ONLY: [WIDGET_MIME]}
    png = Image.open(io.BytesIO(base64.b64decode(data["image/png"])))
    assert png.size == ex.fallback.size and png.height > png.width / 4  # one row per example prompt
    assert "3 example prompts" in data["text/plain"]


@pytest.mark.parametrize("examples", [[], "a red circle", [3]])
def test_prompt_explorer_needs_example_prompts(examples) -> None:
    with pytest.raises(ValueError, match="list of example prompts"):
        prompt_explorer(_fake_draw, examples)


def test_prompt_explorer_rejects_a_draw_that_returns_no_images() -> None:
    with pytest.raises(ValueError, match=r"must return images shaped \(N, C, H, W\)"):
        prompt_explorer(lambda p: torch.zeros(4, 4), ["a red circle"])
    ex = prompt_explorer(lambda p: _fake_draw(p) if p == "ok" else torch.zeros(3), ["ok"])
    ex.text.value = "something else"
    assert "must return images" in ex.status.value


def _fake_vary(strength: float) -> torch.Tensor:
    """Three 'digits' whose brightness is the strength: a picture that changes with the slider."""
    return torch.full((3, 1, 4, 4), 2 * float(strength) - 1)


def test_strength_explorer_redraws_on_the_slider() -> None:
    calls: list[float] = []

    def vary(strength: float) -> torch.Tensor:
        calls.append(strength)
        return _fake_vary(strength)

    ex = strength_explorer(vary, strengths=(0.2, 1.0), value=0.5, scale=2)
    assert isinstance(ex, Explorer)
    assert calls == [0.2, 1.0, 0.5]  # the static picture's rows, then the slider's start
    first = ex.image.value
    assert Image.open(io.BytesIO(first)).size == (2 * (3 * 4 + 4 * 2), 2 * (4 + 2 * 2))
    ex.slider.value = 0.8
    assert calls[-1] == 0.8 and ex.image.value != first
    data, metadata = ex._repr_mimebundle_()
    assert WIDGET_MIME in data and metadata == {LIVE_ONLY: [WIDGET_MIME]}
    png = Image.open(io.BytesIO(base64.b64decode(data["image/png"])))
    assert png.size == ex.fallback.size


@pytest.mark.parametrize("strengths", [[], "0.5", [1.5], [True], [-0.1]])
def test_strength_explorer_needs_strengths_in_0_1(strengths) -> None:
    with pytest.raises(ValueError, match="strengths must be a list of numbers from 0 to 1"):
        strength_explorer(_fake_vary, strengths)


def test_strength_explorer_rejects_a_vary_that_returns_no_images() -> None:
    with pytest.raises(ValueError, match=r"must return images shaped \(N, C, H, W\)"):
        strength_explorer(lambda s: torch.zeros(4, 4), strengths=(0.5,))


def test_steps_explorer_draws_every_k_once_and_switches_between_them() -> None:
    calls: list[int] = []

    def draw(k: int) -> torch.Tensor:
        calls.append(k)
        return torch.full((6, 1, 4, 4), 1 - 2 / k)  # two rows of three, brighter with more steps

    ex = steps_explorer(draw, [1, 2, 8], value=2, nrow=3, row_labels=["a", "b"])
    assert isinstance(ex, Explorer) and calls == [1, 2, 8]
    first = ex.image.value
    ex.slider.value = 8
    assert ex.image.value != first and calls == [1, 2, 8]  # switched, not redrawn
    data, metadata = ex._repr_mimebundle_()
    assert WIDGET_MIME in data and metadata == {LIVE_ONLY: [WIDGET_MIME]}
    assert Image.open(io.BytesIO(base64.b64decode(data["image/png"]))).size == ex.fallback.size


@pytest.mark.parametrize("steps, value, message", [([], None, "steps must be a list of positive whole numbers"),
                                                   ([0, 2], None, "steps must be a list of positive whole numbers"),
                                                   ([1, 2], 3, "value must be one of steps")])
def test_steps_explorer_rejects_bad_steps(steps, value, message) -> None:
    with pytest.raises(ValueError, match=message):
        steps_explorer(lambda k: torch.zeros(2, 1, 4, 4), steps, value=value)
