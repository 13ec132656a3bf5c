"""Tests for diffusion_lab.cli.student: blanking solutions, student copies, the CLI, and the real chapters."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from diffusion_lab.cli.student import (
    BEGIN,
    END,
    STUB,
    SolutionMarkerError,
    blank_solutions,
    make_student_copy,
)

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))

INDENTED = f"""\
import math


def noising_step(x_prev, beta, eps):
    \"\"\"One step of the chain.\"\"\"
    {BEGIN}
    scale = math.sqrt(1 - beta)
    return scale * x_prev + math.sqrt(beta) * eps
    {END}


print("defined")
"""


# ----- blank_solutions ---------------------------------------------------------------------------

def test_blank_keeps_indentation_and_raises() -> None:
    out, n = blank_solutions(INDENTED)
    assert n == 1
    lines = out.splitlines()
    i = lines.index("    # YOUR CODE HERE")
    assert lines[i + 1] == f"    {STUB}"
    assert lines[i - 1] == '    """One step of the chain."""'
    assert lines[i + 2 :] == ["", "", 'print("defined")']
    assert "sqrt(1 - beta)" not in out and BEGIN not in out and END not in out

    namespace: dict = {}
    exec(compile(out, "<student>", "exec"), namespace)  # still valid Python
    with pytest.raises(NotImplementedError, match="Your turn"):
        namespace["noising_step"](1.0, 0.1, 0.0)


def test_blank_top_level_and_nested_indentation() -> None:
    src = f"{BEGIN}\nx = 1\n{END}\nclass A:\n    def f(self):\n        {BEGIN}\n        return 1\n        {END}\n"
    out, n = blank_solutions(src)
    assert n == 2
    assert out.startswith(f"# YOUR CODE HERE\n{STUB}\nclass A:\n")
    assert f"\n        # YOUR CODE HERE\n        {STUB}\n" in out
    compile(out, "<student>", "exec")


def test_blank_counts_blocks() -> None:
    block = f"def f{{i}}():\n    {BEGIN}\n    return {{i}}\n    {END}\n"
    src = "".join(block.format(i=i) for i in range(4))
    out, n = blank_solutions(src)
    assert n == 4
    assert out.count(STUB) == 4
    assert "return" not in out


def test_blank_without_markers_is_unchanged() -> None:
    src = "x = 1\n# ## BEGIN SOLUTION is only a marker on its own line\ny = 2"
    assert blank_solutions(src) == (src, 0)
    assert blank_solutions("") == ("", 0)


def test_blank_marker_with_trailing_spaces_and_no_final_newline() -> None:
    out, n = blank_solutions(f"def f():\n    {BEGIN}   \n    return 1\n    {END}")
    assert n == 1
    assert out == f"def f():\n    # YOUR CODE HERE\n    {STUB}\n"


def test_end_without_begin_names_the_line() -> None:
    src = f"x = 1\ny = 2\n{END}\n"
    with pytest.raises(SolutionMarkerError, match=rf"demo cell, line 3: '{END}' without a '{BEGIN}'"):
        blank_solutions(src, where="demo cell")


def test_nested_begin_names_the_line() -> None:
    src = f"def f():\n    {BEGIN}\n    {BEGIN}\n    return 1\n    {END}\n    {END}\n"
    with pytest.raises(SolutionMarkerError, match=rf"line 3: '{BEGIN}' inside another solution block"):
        blank_solutions(src)


def test_unclosed_begin_names_the_line() -> None:
    """The error for a block that is never closed should say where it was opened, like the others do."""
    src = f"x = 1\ndef f():\n    {BEGIN}\n    return 1\n"
    with pytest.raises(SolutionMarkerError, match="never closed") as info:
        blank_solutions(src, where="demo cell")
    assert "demo cell" in str(info.value)
    assert "line 3" in str(info.value)


def test_marker_error_is_a_value_error() -> None:
    assert issubclass(SolutionMarkerError, ValueError)


# ----- make_student_copy -------------------------------------------------------------------------

def _teacher_notebook(path: Path) -> Path:
    code = nbformat.v4.new_code_cell(
        INDENTED,
        execution_count=3,
        outputs=[nbformat.v4.new_output("stream", name="stdout", text="defined\n")],
    )
    check = nbformat.v4.new_code_cell(
        "check_noising_step(noising_step)",
        execution_count=4,
        outputs=[nbformat.v4.new_output("execute_result", data={"text/plain": "None"}, execution_count=4)],
    )
    markdown = nbformat.v4.new_markdown_cell(f"### Exercise 1.1\nA markdown cell may quote\n{BEGIN}\nverbatim.")
    nb = nbformat.v4.new_notebook(cells=[markdown, code, check])
    nbformat.write(nb, path)
    return path


def test_make_student_copy(tmp_path: Path) -> None:
    src = _teacher_notebook(tmp_path / "01_demo.ipynb")
    before = src.read_bytes()
    dest, n = make_student_copy(src, tmp_path / "student")
    assert dest == tmp_path / "student" / "01_demo.ipynb"
    assert n == 1
    assert src.read_bytes() == before  # the teacher's copy is untouched
    assert sorted(p.name for p in dest.parent.iterdir()) == ["01_demo.ipynb"]  # no temp file left

    nb = nbformat.read(dest, as_version=4)
    nbformat.validate(nb)
    markdown, code, check = nb.cells
    assert BEGIN in markdown.source  # markdown is left alone
    assert STUB in code.source and "math.sqrt(1 - beta)" not in code.source
    assert check.source == "check_noising_step(noising_step)"
    for cell in (code, check):
        assert cell.outputs == []
        assert cell.execution_count is None


def test_make_student_copy_refuses_to_overwrite_source(tmp_path: Path) -> None:
    src = _teacher_notebook(tmp_path / "01_demo.ipynb")
    before = src.read_bytes()
    with pytest.raises(ValueError, match="would overwrite"):
        make_student_copy(src, tmp_path)
    with pytest.raises(ValueError, match="would overwrite"):
        make_student_copy(src, tmp_path / "sub" / "..")
    assert src.read_bytes() == before


def test_blanked_exercise_says_where_its_solution_is(tmp_path: Path) -> None:
    (tmp_path / "chapters").mkdir()
    src = _teacher_notebook(tmp_path / "chapters" / "01_demo.ipynb")
    dest, _ = make_student_copy(src, tmp_path / "workspace")
    lines = nbformat.read(dest, as_version=4).cells[1].source.splitlines()
    i = lines.index("    # YOUR CODE HERE")
    assert lines[i + 1] == "    # The worked solution is in chapters/01_demo.ipynb (the course's reference copy)."
    assert lines[i + 2] == f"    {STUB}"


def test_make_student_copy_never_overwrites_without_asking(tmp_path: Path) -> None:
    src = _teacher_notebook(tmp_path / "01_demo.ipynb")
    dest, _ = make_student_copy(src, tmp_path / "student")
    dest.write_text(dest.read_text().replace("YOUR CODE HERE", "my answer"))  # the learner's work
    mine = dest.read_bytes()
    with pytest.raises(FileExistsError, match="may hold your answers"):
        make_student_copy(src, tmp_path / "student")
    assert dest.read_bytes() == mine
    make_student_copy(src, tmp_path / "student", overwrite=True)
    assert dest.read_bytes() != mine and "YOUR CODE HERE" in dest.read_text()


def test_make_student_copy_missing_notebook(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no notebook at"):
        make_student_copy(tmp_path / "nope.ipynb", tmp_path / "student")


def test_make_student_copy_bad_markers_names_the_cell(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell(END)])
    src = tmp_path / "02_bad.ipynb"
    nbformat.write(nb, src)
    with pytest.raises(SolutionMarkerError, match=r"02_bad\.ipynb, cell 1, line 1"):
        make_student_copy(src, tmp_path / "student")
    assert not (tmp_path / "student" / "02_bad.ipynb").exists()


# ----- command line ------------------------------------------------------------------------------

def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIFFUSION_LAB_")}
    return subprocess.run([sys.executable, "-m", "diffusion_lab", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_student(tmp_path: Path) -> None:
    src = _teacher_notebook(tmp_path / "01_demo.ipynb")
    result = _cli("student", str(src), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "1 solution(s) blanked" in result.stdout
    assert STUB in nbformat.read(tmp_path / "out" / "01_demo.ipynb", as_version=4).cells[1].source


def test_cli_student_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    first = _teacher_notebook(tmp_path / "01_demo.ipynb")
    second = _teacher_notebook(tmp_path / "02_demo.ipynb")
    out = tmp_path / "out"
    assert _cli("student", str(first), "--out", str(out), cwd=tmp_path).returncode == 0
    mine = out / "01_demo.ipynb"
    mine.write_text(mine.read_text().replace("YOUR CODE HERE", "my answer"))
    before = mine.read_bytes()

    result = _cli("student", str(first), str(second), "--out", str(out), cwd=tmp_path)
    assert result.returncode == 2
    assert "01_demo.ipynb already exist(s) and may hold your answers; nothing was written" in result.stderr
    assert "--force" in result.stderr
    assert mine.read_bytes() == before and not (out / "02_demo.ipynb").exists()  # all or nothing

    result = _cli("student", str(first), str(second), "--out", str(out), "--force", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert mine.read_bytes() != before and (out / "02_demo.ipynb").exists()


def test_cli_student_missing_notebook(tmp_path: Path) -> None:
    result = _cli("student", "chapters/99_missing.ipynb", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2
    assert "error: no notebook at chapters/99_missing.ipynb" in result.stderr


def test_cli_student_no_chapters(tmp_path: Path) -> None:
    result = _cli("student", cwd=tmp_path)
    assert result.returncode == 2
    assert "no chapters found" in result.stderr


# ----- the real chapters -------------------------------------------------------------------------

CHECK_CALL = re.compile(r"\bcheck_\w+\s*\(")


def _solution_blocks(source: str) -> list[str]:
    pattern = re.compile(rf"^[ \t]*{BEGIN}[ \t]*\n(.*?)^[ \t]*{END}[ \t]*$", re.M | re.S)
    return pattern.findall(source)


def _defined_functions(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython magics; the name check is then skipped
        return set()
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


@pytest.mark.skipif(not CHAPTERS, reason="no chapters/*.ipynb yet")
@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_exercises(chapter: Path, tmp_path: Path) -> None:
    nb = nbformat.read(chapter, as_version=4)
    code = [(i, c.source) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    solution_cells = [(i, src) for i, src in code if BEGIN in src]
    n_blocks = sum(blank_solutions(src)[1] for _, src in solution_cells)
    assert n_blocks >= 3, f"{chapter.name} has {n_blocks} solution blocks; a chapter needs at least 3 exercises"

    for i, src in solution_cells:
        later_checks = [s for j, s in code if j > i and CHECK_CALL.search(s)]
        assert later_checks, f"{chapter.name}, cell {i}: no later cell calls a check_ function"
        names = _defined_functions(src)
        if names:
            checked = [n for n in names if any(re.search(rf"check_\w+\s*\([^)]*\b{n}\b", s) for s in later_checks)]
            assert checked, f"{chapter.name}, cell {i}: none of {sorted(names)} is passed to a later check_ call"

    dest, n = make_student_copy(chapter, tmp_path)
    assert n == n_blocks
    student = nbformat.read(dest, as_version=4)
    assert len(student.cells) == len(nb.cells)
    for i, src in solution_cells:
        blanked = student.cells[i].source
        assert BEGIN not in blanked and END not in blanked
        assert blanked.count(STUB) == src.count(BEGIN)
        assert blanked.count(f"# The worked solution is in chapters/{chapter.name} ") == src.count(BEGIN)
        for body in _solution_blocks(src):
            if body.strip():
                assert body not in blanked, f"{chapter.name}, cell {i}: solution code left in the student copy"
    assert BEGIN not in "".join(c.source for c in student.cells if c.cell_type == "code")
    assert all(not c.outputs for c in student.cells if c.cell_type == "code")
