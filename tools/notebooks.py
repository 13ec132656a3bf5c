"""Execute a chapter and prepare its saved outputs; shared by tools/build_chapters.py and bench/.

A chapter's source of truth is its jupytext twin ``chapters/NN_name.py``. ``execute`` runs it in a
fresh kernel (full or quick mode) and ``strip_live_only`` removes the outputs that only a live kernel
can show (widget views, animated HTML), keeping the static picture stored beside each of them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
LIVE_ONLY = "diffusion_lab_live_only"  # the same key as diffusion_lab.notebook.figures.LIVE_ONLY
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def read_chapter(py_path: Path) -> nbformat.NotebookNode:
    """The notebook that a chapter's ``.py`` twin describes, with the course's kernelspec."""
    nb = jupytext.read(py_path)
    nb.metadata["kernelspec"] = KERNELSPEC
    return nb


def execute(nb: nbformat.NotebookNode, cwd: Path, *, quick: bool, timeout: int = 900) -> float:
    """Run every cell of ``nb`` in place in a fresh python3 kernel; return the wall time in seconds.

    The kernel inherits this process's environment with DIFFUSION_LAB_QUICK set by ``quick``.
    """
    env = {**os.environ, "DIFFUSION_LAB_QUICK": "1" if quick else "0"}
    old = os.environ.copy()
    os.environ.clear()
    os.environ.update(env)  # nbclient's kernel manager starts the kernel with os.environ
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
        start = time.perf_counter()
        client.execute()
        return time.perf_counter() - start
    finally:
        os.environ.clear()
        os.environ.update(old)


def strip_live_only(nb: nbformat.NotebookNode) -> int:
    """Drop live-only mime types from saved outputs, and the kernel's widget state; return how many were dropped.

    The widget state (notebook metadata "widgets") is only meaningful to the kernel that made it. Widgets
    without a static picture of their own (progress bars) are dropped whole.
    """
    dropped = 0
    if nb.metadata.pop("widgets", None) is not None:
        dropped += 1
    for cell in nb.cells:
        kept = []
        for out in cell.get("outputs", []):
            live = out.get("metadata", {}).pop(LIVE_ONLY, None)
            for mime in live or []:
                if mime in out.get("data", {}):
                    del out["data"][mime]
                    dropped += 1
            if WIDGET_VIEW in out.get("data", {}):
                # an untagged widget, e.g. tqdm's progress bar: its text fallback shows the bar's first state
                # ("0/300"), not its last, so the saved notebook does better without it
                dropped += 1
                continue
            kept.append(out)
        if "outputs" in cell:
            cell["outputs"] = kept
    return dropped


def output_size(nb: nbformat.NotebookNode) -> int:
    """Size in bytes of the notebook as it will be written."""
    return len(nbformat.writes(nb).encode())
