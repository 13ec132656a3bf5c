"""The widgets really work in JupyterLab: run a notebook in a headless Chromium and drag the t slider.

``test_widget_smoke_notebook`` runs a two-cell notebook generated here (a fast check that the
ipywidgets front end renders ``timestep_explorer`` at all); ``test_chapter_01_timestep_explorer``
runs chapter 01 itself, in quick mode, and drives its timestep explorer.

Run with ``python -m pytest tests/browser -s`` (needs ``apt-get install chromium``; the tests skip
without it unless ``DIFFUSION_LAB_REQUIRE_BROWSER=1``). Screenshots of the widget go to
``$DIFFUSION_LAB_ARTIFACTS`` (else a pytest temporary folder); their paths are printed.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import nbformat
import pytest
from lab_driver import LOAD_TIMEOUT_MS, WIDGET_TIMEOUT_MS, check_outputs, open_notebook, run_all_and_wait

pytestmark = pytest.mark.browser

CHAPTER_01 = "01_forward_noising.ipynb"
SMOKE_NOTEBOOK = "_widget_smoke.ipynb"
CAPTION_T = re.compile(r"\bt = (\d+)")


def _caption_t(box) -> int:
    text = box.locator(".widget-html-content").first.inner_text()
    match = CAPTION_T.search(text)
    assert match, f"no 't = N' in the explorer's caption {text!r}"
    return int(match.group(1))


def _drive_timestep_explorer(page, notebook: str, artifacts: Path, name: str) -> None:
    """Find the explorer (VBox of an IntSlider 't', an HTML caption and an Image), move t, check it redraws."""
    slider_t = page.locator(".widget-hslider > label.widget-label", has_text=re.compile(r"^\s*t\s*$"))
    box = (page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output .widget-vbox")
           .filter(has=slider_t)
           .filter(has=page.locator(".widget-html-content", has_text=CAPTION_T))
           .filter(has=page.locator("img.widget-image"))
           .last)  # the innermost box, should the explorer ever be nested in another
    box.wait_for(state="visible", timeout=WIDGET_TIMEOUT_MS)
    box.scroll_into_view_if_needed()
    handle = box.locator(".widget-hslider .noUi-handle").first
    image = box.locator("img.widget-image").first
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle(),
                           timeout=WIDGET_TIMEOUT_MS)

    before_src = image.get_attribute("src")
    before_t = _caption_t(box)
    t_max = int(float(handle.get_attribute("aria-valuemax")))
    assert int(float(handle.get_attribute("aria-valuenow"))) == before_t, "slider and caption disagree before"
    shot_before = artifacts / f"{name}-before.png"
    box.screenshot(path=str(shot_before))

    # Move it as a keyboard user would: small steps, a page, then all the way to one end.
    handle.focus()
    keys = ["ArrowLeft"] * 3 + ["PageDown"] * 2 + ["Home"] if before_t == t_max else \
        ["ArrowRight"] * 3 + ["PageUp"] * 2 + ["End"]
    for key in keys:
        page.keyboard.press(key)
    target = 0 if before_t == t_max else t_max
    page.wait_for_function(
        """([handle, target]) => Math.round(parseFloat(handle.getAttribute('aria-valuenow'))) === target""",
        arg=[handle.element_handle(), target], timeout=WIDGET_TIMEOUT_MS)
    # The kernel redraws: the caption reaches the new t and the image gets a new src.
    caption = box.locator(".widget-html-content").first
    caption.filter(has_text=re.compile(rf"\bt = {target}\b")).wait_for(timeout=WIDGET_TIMEOUT_MS)
    page.wait_for_function("([img, old]) => img.getAttribute('src') !== old && img.complete && img.naturalWidth > 0",
                           arg=[image.element_handle(), before_src], timeout=WIDGET_TIMEOUT_MS)
    time.sleep(0.5)  # let the last redraw land before the screenshot
    after_t = _caption_t(box)
    assert after_t == target != before_t, f"caption shows t = {after_t}, expected {target} (was {before_t})"
    assert image.get_attribute("src") != before_src, "the image did not change when t moved"

    shot_after = artifacts / f"{name}-after.png"
    box.screenshot(path=str(shot_after))
    print(f"{notebook}: t {before_t} -> {after_t}; screenshots: {shot_before} {shot_after}")


@pytest.mark.timeout(240)
def test_widget_smoke_notebook(lab_server, lab_root, page, artifacts_dir):
    """A two-cell notebook showing timestep_explorer: the widget front end renders and responds."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell("import torch\n"
                                  "from diffusion_lab.schedules import NoiseSchedule\n"
                                  "from diffusion_lab.notebook.widgets import timestep_explorer"),
        nbformat.v4.new_code_cell("timestep_explorer(torch.rand(3, 64, 64) * 2 - 1, NoiseSchedule.from_name('cosine'))"),
    ]
    nbformat.write(nb, lab_root / SMOKE_NOTEBOOK)

    open_notebook(page, lab_server, SMOKE_NOTEBOOK)
    state = run_all_and_wait(page, lab_server, SMOKE_NOTEBOOK)
    check_outputs(page, SMOKE_NOTEBOOK, state)
    _drive_timestep_explorer(page, SMOKE_NOTEBOOK, artifacts_dir, "smoke-timestep-explorer")


@pytest.mark.timeout(480)
def test_chapter_01_timestep_explorer(lab_server, lab_root, page, artifacts_dir):
    """Chapter 01 runs cleanly in JupyterLab (quick mode) and its timestep explorer responds to the slider."""
    if not (lab_root / CHAPTER_01).is_file():
        pytest.fail(f"chapters/{CHAPTER_01} is missing: this test drives its timestep explorer", pytrace=False)
    open_notebook(page, lab_server, CHAPTER_01)
    # As saved, the explorer is its static picture: no live slider yet, and nothing broken.
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").first.wait_for(timeout=LOAD_TIMEOUT_MS)
    assert page.locator(".widget-hslider").count() == 0, "the saved chapter already shows a live slider"
    assert page.get_by_text("Error displaying widget").count() == 0, "the saved chapter shows a broken widget"
    state = run_all_and_wait(page, lab_server, CHAPTER_01)
    check_outputs(page, CHAPTER_01, state)
    _drive_timestep_explorer(page, CHAPTER_01, artifacts_dir, "chapter01-timestep-explorer")
