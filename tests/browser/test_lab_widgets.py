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

pytestmark = pytest.mark.browser

CHAPTER_01 = "01_forward_noising.ipynb"
SMOKE_NOTEBOOK = "_widget_smoke.ipynb"
LOAD_TIMEOUT_MS = 90_000
RUN_TIMEOUT_MS = 300_000  # chapter 01 runs in about 10 s in quick mode on 2 CPU cores
WIDGET_TIMEOUT_MS = 30_000
CAPTION_T = re.compile(r"\bt = (\d+)")

# The notebook panel showing `path`, found through window.jupyterapp (--LabApp.expose_app_in_browser).
JS_PANEL = """(path) => {
    const app = window.jupyterapp;
    if (!app) return null;
    for (const w of app.shell.widgets('main')) {
        if (w.context && w.context.path === path && w.content && w.content.model) return w;
    }
    return null;
}"""

JS_KERNEL_IDLE = f"""(path) => {{
    const panel = ({JS_PANEL})(path);
    const kernel = panel && panel.sessionContext.session && panel.sessionContext.session.kernel;
    return !!(kernel && kernel.status === 'idle' && panel.content.widgets.length > 0);
}}"""

# Clear every output (and execution count), so that a count afterwards proves the cell ran now.
JS_CLEAR = f"""async (path) => {{
    const panel = ({JS_PANEL})(path);
    window.jupyterapp.shell.activateById(panel.id);
    await window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs');
    return [...panel.content.model.cells].filter(c => c.type === 'code' && c.executionCount !== null).length;
}}"""

# Start "Run > Run All Cells" without awaiting it; the promise settles when the last cell is done.
JS_RUN_ALL = f"""(path) => {{
    const panel = ({JS_PANEL})(path);
    window.jupyterapp.shell.activateById(panel.id);
    window.__runAll = 'running';
    window.jupyterapp.commands.execute('notebook:run-all-cells').then(
        ok => {{ window.__runAll = ok === false ? 'stopped' : 'done'; }},
        err => {{ window.__runAll = 'failed: ' + err; }});
}}"""

JS_RUN_STATE = f"""(path) => {{
    const panel = ({JS_PANEL})(path);
    const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
    const prompts = [...panel.node.querySelectorAll('.jp-InputArea-prompt')].map(e => e.textContent);
    const cells = [];
    for (const cell of panel.content.model.cells) {{
        const json = cell.toJSON();
        if (json.cell_type !== 'code') continue;
        const errors = (json.outputs || []).filter(o => o.output_type === 'error')
            .map(o => o.ename + ': ' + o.evalue);
        cells.push({{count: json.execution_count, errors, source: [].concat(json.source).join('').slice(0, 80)}});
    }}
    return {{run: window.__runAll, kernel: kernel ? kernel.status : null,
             pending: prompts.filter(p => p.includes('*')).length, cells}};
}}"""


def _handle_dialogs(page, notebook: str) -> bool:
    """Answer JupyterLab's "Select Kernel" dialog with its default (Python 3); fail on any other dialog.

    JupyterLab asks for a kernel when Run All comes before the notebook's session has its kernel
    (the toolbar's status already reads idle by then). ``_wait_kernel_ready`` avoids that race, this
    is the fallback: an unanswered dialog would block Run All for good. True when it answered one.
    """
    dialogs = page.locator(".jp-Dialog")
    if dialogs.count() == 0:
        return False
    select_kernel = dialogs.filter(has=page.locator(".jp-Dialog-header", has_text="Select Kernel"))
    if select_kernel.count() == 0:
        pytest.fail(f"{notebook}: unexpected JupyterLab dialog: {dialogs.all_inner_texts()}")
    print(f"\n{notebook}: JupyterLab asked to select a kernel; answering with its default")
    select_kernel.first.locator(".jp-Dialog-button.jp-mod-accept").click()
    page.wait_for_timeout(500)  # the next poll sees whether it closed (or another one opened)
    return True


def _wait_kernel_ready(page, lab_server, notebook: str) -> None:
    """Wait until the notebook's session has an idle kernel and no dialog is open, twice 0.5 s apart."""
    deadline = time.monotonic() + LOAD_TIMEOUT_MS / 1000
    settled = 0
    while settled < 2:
        if _handle_dialogs(page, notebook):
            settled = 0
        elif page.evaluate(JS_KERNEL_IDLE, notebook):
            settled += 1
        else:
            settled = 0
        if time.monotonic() > deadline:
            pytest.fail(f"{notebook}: the kernel never became idle; server log:\n{lab_server.log_tail()}")
        page.wait_for_timeout(500)


def _run_all_once(page, notebook: str) -> tuple[dict, bool]:
    left = page.evaluate(JS_CLEAR, notebook)
    assert left == 0, f"{notebook}: {left} cells kept their execution count after clearing the outputs"
    started = time.monotonic()
    page.evaluate(JS_RUN_ALL, notebook)
    deadline = started + RUN_TIMEOUT_MS / 1000
    settled, answered = 0, False
    while True:
        answered = _handle_dialogs(page, notebook) or answered
        state = page.evaluate(JS_RUN_STATE, notebook)
        done = state["run"] != "running" and state["kernel"] == "idle" and state["pending"] == 0
        settled = settled + 1 if done else 0
        if settled >= 2:  # idle on two polls in a row: no late message still in flight
            break
        if time.monotonic() > deadline:
            pytest.fail(f"{notebook}: still running after {RUN_TIMEOUT_MS / 1000:.0f}s: run={state['run']}, "
                        f"kernel={state['kernel']}, {state['pending']} cell(s) showing [*]")
        page.wait_for_timeout(500)
    print(f"\n{notebook}: ran all cells in {time.monotonic() - started:.1f}s ({state['run']})")
    return state, answered


def _run_all_and_wait(page, lab_server, notebook: str) -> dict:
    """Clear the open ``notebook``, run all its cells, wait until the kernel is done; return the final state."""
    _wait_kernel_ready(page, lab_server, notebook)
    state, answered = _run_all_once(page, notebook)
    if answered and state["run"] != "done":  # the kernel dialog cancels the Run All that raised it
        print(f"{notebook}: Run All was cut short by the kernel dialog; running it again")
        _wait_kernel_ready(page, lab_server, notebook)
        state, _ = _run_all_once(page, notebook)
    return state


def _check_outputs(page, notebook: str, state: dict) -> None:
    errors = [f"cell {i} ({c['source']!r}...): {'; '.join(c['errors'])}"
              for i, c in enumerate(state["cells"]) if c["errors"]]
    assert not errors, f"{notebook}: cells raised errors:\n" + "\n".join(errors)
    # A fresh kernel numbers the cells 1..n; a saved count left over means that cell did not run now.
    counts = [c["count"] for c in state["cells"]]
    assert counts == list(range(1, len(counts) + 1)), \
        f"{notebook}: not every code cell ran in this session (run-all: {state['run']}); counts {counts}"
    assert state["run"] == "done", f"{notebook}: run-all ended with {state['run']}"

    notebook_node = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")
    # Widget views are created asynchronously after the outputs arrive.
    page.wait_for_function(
        "() => ![...document.querySelectorAll('.jp-OutputArea-output')]"
        ".some(e => e.textContent.includes('Loading widget'))",
        timeout=WIDGET_TIMEOUT_MS,
    )
    broken = notebook_node.get_by_text("Error displaying widget")
    assert broken.count() == 0, f"{notebook}: {broken.count()} widget(s) failed to render: {broken.all_inner_texts()}"
    tracebacks = notebook_node.locator(".jp-OutputArea-output .jp-RenderedText").filter(has_text="Traceback (most recent")
    assert tracebacks.count() == 0, f"{notebook}: traceback in the outputs:\n{tracebacks.first.inner_text()[:2000]}"


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


def _open(page, lab_server, notebook: str) -> None:
    page.goto(lab_server.url(f"lab/tree/{notebook}"), timeout=LOAD_TIMEOUT_MS)
    page.wait_for_function(f"(path) => !!({JS_PANEL})(path)", arg=notebook, timeout=LOAD_TIMEOUT_MS)


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

    _open(page, lab_server, SMOKE_NOTEBOOK)
    state = _run_all_and_wait(page, lab_server, SMOKE_NOTEBOOK)
    _check_outputs(page, SMOKE_NOTEBOOK, state)
    _drive_timestep_explorer(page, SMOKE_NOTEBOOK, artifacts_dir, "smoke-timestep-explorer")


@pytest.mark.timeout(480)
def test_chapter_01_timestep_explorer(lab_server, lab_root, page, artifacts_dir):
    """Chapter 01 runs cleanly in JupyterLab (quick mode) and its timestep explorer responds to the slider."""
    if not (lab_root / CHAPTER_01).is_file():
        pytest.fail(f"chapters/{CHAPTER_01} is missing: this test drives its timestep explorer", pytrace=False)
    _open(page, lab_server, CHAPTER_01)
    # As saved, the explorer is its static picture: no live slider yet, and nothing broken.
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").first.wait_for(timeout=LOAD_TIMEOUT_MS)
    assert page.locator(".widget-hslider").count() == 0, "the saved chapter already shows a live slider"
    assert page.get_by_text("Error displaying widget").count() == 0, "the saved chapter shows a broken widget"
    state = _run_all_and_wait(page, lab_server, CHAPTER_01)
    _check_outputs(page, CHAPTER_01, state)
    _drive_timestep_explorer(page, CHAPTER_01, artifacts_dir, "chapter01-timestep-explorer")
