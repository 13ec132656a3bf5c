"""Each chapter's .ipynb and its jupytext .py twin must say the same thing."""

from pathlib import Path

import jupytext
import nbformat
import pytest

CHAPTERS = Path(__file__).resolve().parents[1] / "chapters"
PY_FILES = sorted(CHAPTERS.glob("[0-9][0-9]_*.py"))
NB_FILES = sorted(CHAPTERS.glob("[0-9][0-9]_*.ipynb"))
FIX = "regenerate the pair with `.venv/bin/python tools/build_chapters.py {prefix}`"


def test_every_chapter_is_a_pair():
    assert PY_FILES, "no chapters found"
    py_stems = {p.stem for p in PY_FILES}
    nb_stems = {p.stem for p in NB_FILES}
    assert py_stems == nb_stems, f"unpaired chapters: {sorted(py_stems ^ nb_stems)}"


@pytest.mark.parametrize("py", PY_FILES, ids=lambda p: p.stem)
def test_cells_agree(py: Path):
    nb = nbformat.read(py.with_suffix(".ipynb"), as_version=4)
    twin = jupytext.read(py)
    cells = [(c.cell_type, c.source) for c in nb.cells]
    twin_cells = [(c.cell_type, c.source) for c in twin.cells]
    for i, (a, b) in enumerate(zip(cells, twin_cells)):
        assert a == b, f"{py.stem}: cell {i} differs between .ipynb and .py; " + FIX.format(prefix=py.stem[:2])
    assert len(cells) == len(twin_cells), f"{py.stem}: cell counts differ; " + FIX.format(prefix=py.stem[:2])


@pytest.mark.parametrize("py", PY_FILES, ids=lambda p: p.stem)
def test_py_is_canonical_jupytext(py: Path):
    """The .py is exactly what jupytext writes for the notebook (same header, same cell markers)."""
    nb = jupytext.read(py.with_suffix(".ipynb"))
    assert jupytext.writes(nb, fmt="py:percent") == py.read_text(), FIX.format(prefix=py.stem[:2])


@pytest.mark.parametrize("nb_path", NB_FILES, ids=lambda p: p.stem)
def test_notebook_is_small_and_has_outputs(nb_path: Path):
    size = nb_path.stat().st_size
    assert size < 2_000_000, f"{nb_path.name} is {size / 1e6:.1f} MB; keep each chapter under 2 MB"
    nb = nbformat.read(nb_path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), f"{nb_path.name} was not fully executed; " + FIX.format(
        prefix=nb_path.stem[:2])
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{nb_path.name} has saved error outputs"
