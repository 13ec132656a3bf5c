"""course.py's learner workspace: made on the first `lab`, never overwritten, new chapters added; JupyterLab
as root. The logic is tested through course.py's own functions, without starting JupyterLab."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import nbformat
import pytest

from diffusion_lab.cli.student import BEGIN, END, STUB

ROOT = Path(__file__).resolve().parents[1]


def _load_course():
    spec = importlib.util.spec_from_file_location("course_under_test", ROOT / "course.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


course = _load_course()


def _chapter(folder: Path, name: str) -> Path:
    solution = nbformat.v4.new_code_cell(f"def f(x):\n    {BEGIN}\n    return 2 * x\n    {END}\n", execution_count=1,
                                         outputs=[nbformat.v4.new_output("stream", name="stdout", text="hi\n")])
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {name}"), solution])
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / name)
    return folder / name


def test_course_py_needs_only_the_standard_library() -> None:
    """course.py runs before any environment exists: no third-party or course import at module level."""
    tree = ast.parse((ROOT / "course.py").read_text())
    top = [a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names]
    top += [n.module for n in tree.body if isinstance(n, ast.ImportFrom) and n.module]
    roots = {name.split(".")[0] for name in top}
    assert roots <= set(sys.stdlib_module_names) | {"__future__"}, roots


def test_workspace_is_ignored_by_git() -> None:
    assert "/workspace/" in (ROOT / ".gitignore").read_text().splitlines()


def test_workspace_first_start_then_only_new_chapters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chapters, workspace = tmp_path / "chapters", tmp_path / "workspace"
    for name in ("00_welcome.ipynb", "01_demo.ipynb"):
        _chapter(chapters, name)

    made = course.prepare_workspace(sys.executable, chapters, workspace)
    assert made == ["00_welcome.ipynb", "01_demo.ipynb"]
    assert "made your workspace" in capsys.readouterr().out
    copy = nbformat.read(workspace / "01_demo.ipynb", as_version=4)
    assert STUB in copy.cells[1].source and "2 * x" not in copy.cells[1].source and not copy.cells[1].outputs
    assert "worked solution is in chapters/01_demo.ipynb" in copy.cells[1].source

    mine = workspace / "01_demo.ipynb"  # the learner answers, and a chapter appears in the course
    mine.write_text(mine.read_text().replace("YOUR CODE HERE", "my answer: return x + x"))
    before = mine.read_bytes()
    _chapter(chapters, "02_new.ipynb")

    assert course.prepare_workspace(sys.executable, chapters, workspace) == ["02_new.ipynb"]
    out = capsys.readouterr().out
    assert "added 1 new chapter(s)" in out and "02_new.ipynb" in out and "as you left them" in out
    assert mine.read_bytes() == before
    assert (workspace / "02_new.ipynb").exists()

    assert course.prepare_workspace(sys.executable, chapters, workspace) == []
    assert "as you left it" in capsys.readouterr().out
    assert mine.read_bytes() == before


def test_a_deleted_copy_comes_back_fresh(tmp_path: Path) -> None:
    chapters, workspace = tmp_path / "chapters", tmp_path / "workspace"
    _chapter(chapters, "00_welcome.ipynb")
    course.prepare_workspace(sys.executable, chapters, workspace)
    (workspace / "00_welcome.ipynb").unlink()
    assert course.new_chapters(chapters, workspace) == [chapters / "00_welcome.ipynb"]


def test_jupyter_opens_the_workspace_and_allows_root(capsys: pytest.CaptureFixture[str]) -> None:
    cmd = course.jupyter_command("py", ["--no-browser"], as_root=False)
    assert cmd == ["py", "-m", "jupyter", "lab", "workspace/00_welcome.ipynb", "--no-browser"]
    assert capsys.readouterr().out == ""

    cmd = course.jupyter_command("py", [], as_root=True)
    assert cmd[-1] == "--allow-root"
    assert "--allow-root" in capsys.readouterr().out  # it says what it did

    assert course.jupyter_command("py", ["--allow-root"], as_root=True).count("--allow-root") == 1


def test_imagine_serves_the_app_notebook_with_voila_and_hides_its_code() -> None:
    cmd = course.voila_command("py", ["--port=8870"])
    assert cmd == ["py", "-m", "voila", "apps/imagine.ipynb", "--strip_sources=True", "--port=8870"]
    app = nbformat.read(ROOT / "apps" / "imagine.ipynb", as_version=4)
    code = [c.source for c in app.cells if c.cell_type == "code"]
    assert len(code) == 1 and "ImagineApp(" in code[0]  # the browser test drives what this cell shows
    assert all(not c.get("outputs") for c in app.cells if c.cell_type == "code")  # Voila runs it fresh
