"""Driving a notebook in JupyterLab from a test: open it, run all its cells, wait for the kernel, check that
every cell ran without an error and every widget rendered. Shared by the browser tests."""

from __future__ import annotations

import time

import pytest

LOAD_TIMEOUT_MS = 90_000
RUN_TIMEOUT_MS = 300_000  # chapter 01 runs in about 10 s in quick mode on 2 CPU cores
WIDGET_TIMEOUT_MS = 30_000

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


def handle_dialogs(page, notebook: str) -> bool:
    """Answer JupyterLab's "Select Kernel" dialog with its default (Python 3); fail on any other dialog.

    JupyterLab asks for a kernel when Run All comes before the notebook's session has its kernel
    (the toolbar's status already reads idle by then). ``wait_kernel_ready`` avoids that race, this
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


def wait_kernel_ready(page, lab_server, notebook: str) -> None:
    """Wait until the notebook's session has an idle kernel and no dialog is open, twice 0.5 s apart."""
    deadline = time.monotonic() + LOAD_TIMEOUT_MS / 1000
    settled = 0
    while settled < 2:
        if handle_dialogs(page, notebook):
            settled = 0
        elif page.evaluate(JS_KERNEL_IDLE, notebook):
            settled += 1
        else:
            settled = 0
        if time.monotonic() > deadline:
            pytest.fail(f"{notebook}: the kernel never became idle; server log:\n{lab_server.log_tail()}")
        page.wait_for_timeout(500)


def run_all_once(page, notebook: str) -> tuple[dict, bool]:
    left = page.evaluate(JS_CLEAR, notebook)
    assert left == 0, f"{notebook}: {left} cells kept their execution count after clearing the outputs"
    started = time.monotonic()
    page.evaluate(JS_RUN_ALL, notebook)
    deadline = started + RUN_TIMEOUT_MS / 1000
    settled, answered = 0, False
    while True:
        answered = handle_dialogs(page, notebook) or answered
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


def run_all_and_wait(page, lab_server, notebook: str) -> dict:
    """Clear the open ``notebook``, run all its cells, wait until the kernel is done; return the final state."""
    wait_kernel_ready(page, lab_server, notebook)
    state, answered = run_all_once(page, notebook)
    if answered and state["run"] != "done":  # the kernel dialog cancels the Run All that raised it
        print(f"{notebook}: Run All was cut short by the kernel dialog; running it again")
        wait_kernel_ready(page, lab_server, notebook)
        state, _ = run_all_once(page, notebook)
    return state


def check_outputs(page, notebook: str, state: dict) -> None:
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


def open_notebook(page, lab_server, notebook: str) -> None:
    page.goto(lab_server.url(f"lab/tree/{notebook}"), timeout=LOAD_TIMEOUT_MS)
    page.wait_for_function(f"(path) => !!({JS_PANEL})(path)", arg=notebook, timeout=LOAD_TIMEOUT_MS)
