"""The /imagine widget really works in a browser: type a prompt, press imagine, see four pictures, press U2,
see the enlarged one; first in JupyterLab (a notebook generated here, as chapter 11 shows the app), then as
the web page ``python3 course.py imagine`` serves with Voila (apps/imagine.ipynb, no code cells shown). Both
draw with tiny random checkpoints (``tiny_sd_checkpoints``), so the tests check the front end, not the
shipped model, in seconds.

Run with ``python -m pytest tests/browser -s`` (see test_lab_widgets.py for what it needs).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from lab_driver import WIDGET_TIMEOUT_MS, check_outputs, open_notebook, run_all_and_wait
from servers import REPO, die_with_parent, free_port
from tiny_sd_checkpoints import write_tiny_sd, write_upsampler

pytestmark = pytest.mark.browser

NOTEBOOK = "_imagine_app.ipynb"
PROMPT = "a red circle to the left of a blue square --seed 3 --steps 4"
ACTION_TIMEOUT_MS = 60_000

# True when every picture of the app shows a decoded image (the widget writes PNGs into blob: URLs).
JS_DRAWN = """(imgs) => imgs.length > 0 && imgs.every(img => img.complete && img.naturalWidth > 0
    && (img.getAttribute('src') || '') !== '')"""


def app_notebook(root: Path) -> nbformat.NotebookNode:
    """Two cells, as chapter 11 shows the app: import it, then show it (reading the checkpoints in ``root``)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell("from diffusion_lab.notebook.imagine_app import ImagineApp"),
        nbformat.v4.new_code_cell(f"app = ImagineApp(root={str(root)!r}, device='cpu')\napp"),
    ]
    return nb


def drive_imagine(page, scope: str, artifacts: Path, name: str) -> None:
    """In the app under the CSS selector ``scope``: type PROMPT, press imagine, wait for four pictures, press
    U2, wait for the enlarged one; then type another seed and press Enter; screenshots on the way."""
    app = page.locator(f"{scope} .imagine-app").last
    app.wait_for(state="visible", timeout=WIDGET_TIMEOUT_MS)
    app.scroll_into_view_if_needed()
    pictures = app.locator("img.imagine-picture")
    assert pictures.count() == 4, f"the app shows {pictures.count()} picture slots, expected 4"
    assert not page.evaluate(JS_DRAWN, pictures.element_handles()), "pictures were drawn before any prompt"
    u2 = app.get_by_role("button", name="U2", exact=True)
    assert u2.is_disabled(), "U2 is live before there is a grid to upscale"

    box = app.locator("input[type=text]").first
    box.click()
    box.fill(PROMPT)
    app.get_by_role("button", name="imagine", exact=True).click()
    page.wait_for_function(JS_DRAWN, arg=pictures.element_handles(), timeout=ACTION_TIMEOUT_MS)
    status = app.locator(".widget-html-content").first
    status.filter(has_text="seeds 3, 4, 5, 6").wait_for(timeout=ACTION_TIMEOUT_MS)
    sizes = page.evaluate("(imgs) => imgs.map(i => [i.naturalWidth, i.naturalHeight])", pictures.element_handles())
    assert sizes == [[192, 192]] * 4, f"the four pictures decode to {sizes}, expected 64 px shown 3x (192)"
    app.screenshot(path=str(artifacts / f"{name}-grid.png"))

    u2.wait_for(state="visible")
    page.wait_for_function("b => !b.disabled", arg=u2.element_handle(), timeout=WIDGET_TIMEOUT_MS)
    u2.click()
    enlarged = app.locator("img.imagine-enlarged")
    page.wait_for_function(JS_DRAWN, arg=[enlarged.element_handle()], timeout=ACTION_TIMEOUT_MS)
    enlarged.wait_for(state="visible", timeout=WIDGET_TIMEOUT_MS)
    status.filter(has_text="upscale of picture 2").wait_for(timeout=ACTION_TIMEOUT_MS)
    size = page.evaluate("(i) => [i.naturalWidth, i.naturalHeight]", enlarged.element_handle())
    assert size == [256, 256], f"the enlarged picture decodes to {size}, expected 128 px shown 2x (256)"
    options = app.locator("select option")
    assert options.count() == 2, f"the history lists {options.count()} jobs after imagine and U2, expected 2"
    app.screenshot(path=str(artifacts / f"{name}-upscaled.png"))

    box.fill(PROMPT.replace("--seed 3", "--seed 7"))  # Enter in the box draws too, once
    box.press("Enter")
    status.filter(has_text="seeds 7, 8, 9, 10").wait_for(timeout=ACTION_TIMEOUT_MS)
    page.wait_for_timeout(1000)  # a second, duplicate draw would land in this second
    assert options.count() == 3, f"the history lists {options.count()} jobs after pressing Enter, expected 3"
    print(f"{name}: imagine and U2 drawn; screenshots in {artifacts}")


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    """A data folder whose checkpoints/ holds a tiny tiny_sd, its autoencoder and a tiny upsampler."""
    return write_upsampler(write_tiny_sd(tmp_path_factory.mktemp("imagine-data") / "checkpoints"))


def _course():
    spec = importlib.util.spec_from_file_location("course_for_voila_test", REPO / "course.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def voila_url(chromium_path, tiny_root, tmp_path):
    """``python3 course.py imagine``'s Voila command on a free port, reading the tiny checkpoints."""
    port = free_port()
    cmd = _course().voila_command(sys.executable, ["--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1"])
    env = {**os.environ, "DIFFUSION_LAB_DATA": str(tiny_root.parent), "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "PYTHONUNBUFFERED": "1"}
    log_path = tmp_path / "voila.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent)
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"Voila exited with code {proc.returncode}:\n{log_path.read_text()[-3000:]}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        pytest.fail(f"Voila did not listen within 60 s:\n{log_path.read_text()[-3000:]}")
                    time.sleep(0.25)
            yield f"http://127.0.0.1:{port}/"
        finally:
            os.killpg(proc.pid, signal.SIGTERM)  # Voila and its kernel
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.timeout(300)
def test_imagine_app_in_jupyterlab(lab_server, lab_root, page, artifacts_dir, tiny_root):
    nbformat.write(app_notebook(tiny_root), lab_root / NOTEBOOK)
    open_notebook(page, lab_server, NOTEBOOK)
    state = run_all_and_wait(page, lab_server, NOTEBOOK)
    check_outputs(page, NOTEBOOK, state)
    drive_imagine(page, ".jp-NotebookPanel:not(.lm-mod-hidden)", artifacts_dir, "lab-imagine")


@pytest.mark.timeout(300)
def test_imagine_web_page_with_voila(voila_url, page, artifacts_dir):
    """The projector demo: the page shows the app's text and widget but none of the notebook's code."""
    page.goto(voila_url, timeout=120_000)  # Voila runs the notebook before it sends the page
    drive_imagine(page, "body", artifacts_dir, "voila-imagine")
    page.screenshot(path=str(artifacts_dir / "voila-imagine-page.png"), full_page=True)
    assert page.get_by_text("U1–U4").count() == 1, "the page lost the notebook's table of buttons"
    assert page.get_by_text("from diffusion_lab").count() == 0, "the page shows the notebook's code"
    assert page.locator(".jp-CodeCell .jp-InputArea, .jp-CodeMirrorEditor, pre code").count() == 0, "the page shows code cells"
