"""A learner's path through JupyterLab in a real browser: open chapter 01, run it, use the slider.

The saved notebook shows the timestep explorer's static picture; after "Run All" the live ipywidgets
slider must render (no "Error displaying widget"), and moving it must change the noised image and
its caption. Uses Debian's Chromium through Playwright (see conftest.py); nothing is downloaded.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.browser

INNER_ENV = "DIFFUSION_LAB_BROWSER_INNER"
ATTEMPT_TIMEOUT_S = 180

CHAPTER = "01_forward_noising.ipynb"
RUN_TIMEOUT_S = 300

# JavaScript run in the page: the execution prompt of every code cell ("[3]:", "[*]:", "[ ]:").
PROMPTS_JS = "() => [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(e => e.textContent.trim())"


def _wait_until(page, predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        page.wait_for_timeout(500)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}; "
                         f"cell prompts: {page.evaluate(PROMPTS_JS)}")


def _error_outputs(page) -> list[str]:
    """Text of outputs that are Python errors (tracebacks), not harmless stderr warnings."""
    texts = page.eval_on_selector_all(
        ".jp-OutputArea-output", "els => els.map(e => e.innerText)")
    return [t[:500] for t in texts if "Traceback (most recent call last)" in t or re.search(r"^\w+Error\b", t, re.M)]


def test_chapter_01_in_a_real_browser(chromium_path):
    """Runs the scenario below in a child pytest process, at most twice.

    About one run in six on this project's 2-core machines, a Playwright call never returns (the
    cause is not yet known: no error, the page just stops answering). A hang is retried once and
    reported; a real failure (an assertion, an error) fails at once, without a retry.
    """
    test_id = f"{Path(__file__).resolve()}::test_chapter_01_slider_works_in_jupyterlab"
    env = {**os.environ, INNER_ENV: "1"}
    for attempt in (1, 2):
        try:
            result = subprocess.run([sys.executable, "-m", "pytest", test_id, "-q", "-s", "-p", "no:cacheprovider"],
                                    env=env, capture_output=True, text=True, timeout=ATTEMPT_TIMEOUT_S,
                                    start_new_session=True)
        except subprocess.TimeoutExpired as hang:
            print(f"attempt {attempt} hung for {ATTEMPT_TIMEOUT_S} s; output so far:\n{hang.stdout or ''}")
            continue
        print(result.stdout[-3000:])
        assert result.returncode == 0, f"the browser scenario failed:\n{result.stdout[-6000:]}{result.stderr[-2000:]}"
        assert re.search(r"\b1 passed", result.stdout), f"the browser scenario did not run:\n{result.stdout[-3000:]}"
        return
    pytest.fail(f"the browser scenario hung twice ({ATTEMPT_TIMEOUT_S} s each)")


@pytest.mark.skipif(os.environ.get(INNER_ENV) != "1", reason="runs inside test_chapter_01_in_a_real_browser")
@pytest.mark.timeout(ATTEMPT_TIMEOUT_S + 60)
def test_chapter_01_slider_works_in_jupyterlab(lab_server, page, artifacts_dir):
    page.set_default_timeout(60_000)
    page.goto(lab_server.url(f"lab/tree/{CHAPTER}"))
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=120_000)
    try:
        page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=120_000)
    except Exception as err:
        raise AssertionError(f"the kernel never became idle; server log:\n{lab_server.log_tail()}") from err
    # Before running, the saved output is the static fallback: a picture, no widget and no error.
    assert page.locator(".widget-hslider").count() == 0
    assert "Error displaying widget" not in page.inner_text("body")

    nb = nbformat.read(lab_server.root / CHAPTER, as_version=4)
    n_code_cells = sum(c.cell_type == "code" for c in nb.cells)
    _wait_until(page, lambda: len(page.evaluate(PROMPTS_JS)) == n_code_cells, 60, "every cell to render")
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")

    def finished() -> bool:
        prompts = page.evaluate(PROMPTS_JS)
        numbers = [int(m.group(1)) for p in prompts if (m := re.search(r"\[(\d+)\]", p))]
        # A fresh kernel numbers the cells 1..n, so the run is over when the largest is n.
        return not any("*" in p for p in prompts) and numbers and max(numbers) == n_code_cells

    _wait_until(page, finished, RUN_TIMEOUT_S, "every cell of chapter 01 to run")
    errors = _error_outputs(page)
    assert not errors, "cells raised errors:\n" + "\n---\n".join(errors)
    assert "Error displaying widget" not in page.inner_text("body")

    slider = page.locator(".widget-hslider").first
    slider.wait_for(state="visible", timeout=60_000)
    box = page.locator(".widget-vbox", has=page.locator(".widget-hslider")).first
    image = box.locator("img").first
    caption = box.locator(".widget-html-content").first
    image.wait_for(state="visible")
    before_src, before_caption = image.get_attribute("src"), caption.inner_text()
    assert re.search(r"t = 0\b", before_caption), before_caption

    handle = slider.locator(".noUi-handle").first
    handle.focus()
    for _ in range(3):
        page.keyboard.press("PageUp")
    _wait_until(page, lambda: caption.inner_text() != before_caption, 30, "the caption to follow the slider")
    _wait_until(page, lambda: image.get_attribute("src") != before_src, 30, "the image to change")

    after_caption = caption.inner_text()
    t_after = int(re.search(r"t = (\d+)", after_caption).group(1))
    assert t_after > 0, after_caption
    shot = artifacts_dir / "chapter01-timestep-explorer.png"
    box.screenshot(path=str(shot))
    print(f"\nslider moved to t = {t_after}; screenshot: {shot}")
