"""nbgrader, for real: tools/nbgrader_course.py builds a course that nbgrader accepts and grades right.

The round trip runs the commands docs/teaching.md gives, with nbgrader's own command line, in a
temporary folder: build the course from chapter 01 -> ``generate_assignment`` -> ``release_assignment``
-> a learner (the login running the test) fetches it, answers 1.1 right, 1.2 wrong, leaves 1.3 blank,
writes an endless loop for 1.4 and fakes 1.2's check (a locked cell) -> ``submit`` -> ``collect`` ->
``autograde`` -> ``generate_feedback``; nbgrader's gradebook must then hold exactly 1 of 4 points, and
what the learner is shown must say what is wrong without the checks' source. Student copies
(``python -m diffusion_lab student``) must blank the same cells as nbgrader does, in every chapter.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from diffusion_lab.cli.student import STUB, make_student_copy
from diffusion_lab.exercises import CHECKS
from tools.nbgrader_course import (
    CODE_STUB,
    CourseBuildError,
    assignment_notebook,
    build_course,
    chapter_notebooks,
)

ROOT = Path(__file__).resolve().parents[1]

CHAPTERS = chapter_notebooks([])
BIN = Path(sys.executable).parent  # nbgrader runs `alembic` from PATH: the venv's bin, as when it is activated
NO_NBGRADER = "nbgrader is not installed: it comes with the dev extra (pip install -e '.[dev]')"
ASSIGNMENT = "01_forward_noising"  # the fastest chapter with at least three exercises (9 s in quick mode)
CELL_TIMEOUT = 20  # seconds per cell when autograding here; every cell of chapter 01 takes under 5 s


def _nbgraders(nb: nbformat.NotebookNode) -> list[dict]:
    return [c.metadata["nbgrader"] for c in nb.cells]


# ----- the course folder: cell metadata, without nbgrader ----------------------------------------------

@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_every_cell_gets_nbgrader_metadata(chapter: Path) -> None:
    nb, graded = assignment_notebook(chapter, points=2)
    metas = _nbgraders(nb)
    ids = [m["grade_id"] for m in metas]
    assert len(ids) == len(set(ids)), "grade ids must be unique in a notebook"
    assert all(m["schema_version"] == 3 and m["locked"] != m["solution"] for m in metas)
    number = chapter.name[:2].lstrip("0") or "0"
    assert graded == [f"{number}.{i}" for i in range(1, len(graded) + 1)] and len(graded) >= 3
    for n in graded:
        key = n.replace(".", "_")
        i = ids.index(f"exercise_{key}")
        assert metas[i] == {"grade": False, "grade_id": f"exercise_{key}", "locked": False, "schema_version": 3,
                            "solution": True}
        assert "### BEGIN SOLUTION" in nb.cells[i].source
        assert ids[i + 1] == f"check_{key}" and metas[i + 1]["grade"] and metas[i + 1]["points"] == 2
        assert f"check_{nb.cells[i + 1].source.split('check_', 1)[1].split('(')[0]}" == CHECKS[n].__name__
    others = [m for m in metas if not m["solution"] and not m["grade"]]
    assert others and all(m["locked"] and m["grade_id"].startswith("cell_") for m in others)
    assert all(not c.get("outputs") for c in nb.cells)


def _notebook(*cells: tuple[str, str]) -> nbformat.NotebookNode:
    new = {"markdown": nbformat.v4.new_markdown_cell, "code": nbformat.v4.new_code_cell}
    return nbformat.v4.new_notebook(cells=[new[kind](source) for kind, source in cells])


SOLUTION = "def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION"


def test_a_chapter_that_mentions_the_markers_in_prose_still_builds(tmp_path: Path) -> None:
    """Chapter 00 explains the markers in a code span; nbgrader finds markers by substring, in markdown too."""
    chapter = tmp_path / "09_x.ipynb"
    nbformat.write(_notebook(("markdown", "Solutions sit between `### BEGIN SOLUTION` and\n`### END SOLUTION` lines."),
                             ("markdown", "### Exercise 9.1: f"), ("code", SOLUTION), ("code", "check_f(f)")), chapter)
    nb, graded = assignment_notebook(chapter)
    assert graded == ["9.1"]
    assert nb.cells[0].source == ("Solutions sit between <code>### BEGIN&#32;SOLUTION</code> and\n"
                                  "<code>### END&#32;SOLUTION</code> lines.")


@pytest.mark.parametrize(("cells", "message"), [
    ((("code", SOLUTION), ("code", "check_f(f)")), r"cell 0: a solution with no '### Exercise N\.M' heading"),
    ((("markdown", "### Exercise 9.1: f"), ("code", SOLUTION), ("code", "print(f(1))")),
     r"cell 1: exercise 9\.1's solution is not followed by a cell that calls its check_ function"),
    ((("markdown", "### Exercise 9.1: f"), ("code", SOLUTION), ("code", "check_f(f)"), ("code", SOLUTION),
      ("code", "check_f(f)")), r"cell 3: a solution with no '### Exercise N\.M' heading of its own"),
    ((("markdown", "Write ### BEGIN SOLUTION above your answer"), ("code", "x = 1")),
     r"cell 0: mentions 'BEGIN SOLUTION' outside a solution cell"),
    ((("markdown", "no exercise here"),), r"no exercises to grade"),
])
def test_a_chapter_nbgrader_cannot_grade_stops_the_build(tmp_path: Path, cells: tuple, message: str) -> None:
    chapter = tmp_path / "chapters" / "09_x.ipynb"
    chapter.parent.mkdir()
    nbformat.write(_notebook(*cells), chapter)
    with pytest.raises(CourseBuildError, match=message):
        build_course(tmp_path / "course", [chapter])
    assert not (tmp_path / "course").exists(), "nothing is written when a chapter fails"


# ----- with nbgrader ---------------------------------------------------------------------------------

def _nbgrader(*args: str, cwd: Path, timeout: float = 300) -> str:
    """Run ``nbgrader ARGS`` as from an activated venv; return what it printed."""
    pytest.importorskip("nbgrader", reason=NO_NBGRADER)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run([str(BIN / "nbgrader"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    log = done.stdout + done.stderr
    assert done.returncode == 0, f"nbgrader {' '.join(args)} failed (exit {done.returncode}):\n{log[-4000:]}"
    return log


def test_student_copies_blank_the_same_cells_as_nbgrader(tmp_path: Path) -> None:
    """`python -m diffusion_lab student` and nbgrader's generate_assignment hide the same code, with one stub."""
    course = tmp_path / "course"
    build_course(course, CHAPTERS)
    _nbgrader("generate_assignment", "*", "--no-db", cwd=course)
    for chapter in CHAPTERS:
        released = nbformat.read(course / "release" / chapter.stem / chapter.name, as_version=4)
        student = nbformat.read(make_student_copy(chapter, tmp_path / "student")[0], as_version=4)
        original = nbformat.read(chapter, as_version=4)
        assert len(released.cells) == len(student.cells) == len(original.cells), chapter.name
        for i, (ours, theirs, before) in enumerate(zip(student.cells, released.cells, original.cells)):
            if ours.cell_type == "code":
                # the student copy adds a comment saying where the worked solution is; nbgrader's does not
                ours_lines = [line for line in ours.source.splitlines() if "The worked solution is in" not in line]
                assert ours_lines == theirs.source.splitlines(), f"{chapter.name}, cell {i}"
                assert (ours.source != before.source) == (theirs.source != before.source) \
                    == theirs.metadata["nbgrader"]["solution"], f"{chapter.name}, cell {i}"
        assert sum(c.source.count(STUB) for c in released.cells) == sum(
            c.source.count("### BEGIN SOLUTION") for c in original.cells if c.cell_type == "code")


def _answer(nb: nbformat.NotebookNode, grade_id: str, *body: str) -> None:
    """Replace the stub in the answer cell ``grade_id`` by ``body`` (lines, indented like the stub)."""
    (cell,) = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id]
    stub = CODE_STUB.splitlines()[-1]
    (line,) = [line for line in cell.source.splitlines() if line.strip() == stub]
    indent = line[: len(line) - len(line.lstrip())]
    cell.source = cell.source.replace(line, "\n".join(indent + b for b in body))


def _shown(cell: nbformat.NotebookNode) -> str:
    """What a check cell shows: its printed text and its error, as the learner sees it."""
    parts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type == "error":
            parts.extend(out.traceback)
    return "\n".join(parts)


def _check_source(key: str) -> list[str]:
    """The longer lines of a check's body: none may show in what a learner sees."""
    lines = inspect.getsource(CHECKS[key]).splitlines()[2:]
    return [s.strip() for s in lines if len(s.strip()) > 25 and not s.strip().startswith(("#", '"'))]


@pytest.mark.notebooks
@pytest.mark.timeout(400)
@pytest.mark.skipif(os.name == "nt", reason="nbgrader's exchange (release, fetch, submit, collect) needs a POSIX system")
def test_nbgrader_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("nbgrader", reason=NO_NBGRADER)
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter-data"))  # submit keeps a copy there (its cache)
    from nbgrader.api import Gradebook
    from nbgrader.utils import get_username

    # The exchange names a submission after the learner's login (JupyterHub's user), here whoever runs the test.
    learner = get_username()
    course, exchange, home = tmp_path / "course", tmp_path / "exchange", tmp_path / "home" / learner
    exchange.mkdir()
    home.mkdir(parents=True)
    to_exchange = f"--Exchange.root={exchange}"
    started = time.perf_counter()

    # the teacher: the course folder, the assignment, its release
    assert subprocess.run([sys.executable, str(ROOT / "tools" / "nbgrader_course.py"), str(course), "01"],
                          capture_output=True, text=True, check=True).returncode == 0
    _nbgrader("generate_assignment", ASSIGNMENT, cwd=course)
    _nbgrader("release_assignment", ASSIGNMENT, to_exchange, cwd=course)

    # the learner: fetch, answer, submit
    _nbgrader("fetch_assignment", ASSIGNMENT, "--course", "diffusion-lab", to_exchange, cwd=home)
    mine = home / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    nb = nbformat.read(mine, as_version=4)
    _answer(nb, "exercise_1_1", "return math.sqrt(1 - beta) * x_prev + math.sqrt(beta) * eps")  # right
    _answer(nb, "exercise_1_2", "return (1 - beta) * v")  # wrong: forgets the added noise's variance
    # exercise 1.3 stays blank
    _answer(nb, "exercise_1_4", "while True:", "    pass")  # never returns
    (check,) = [c for c in nb.cells if c.metadata["nbgrader"]["grade_id"] == "check_1_2"]
    check.source = 'print("✅ Exercise 1.2 passed")'  # a locked cell, edited outside Jupyter: autograde restores it
    nbformat.write(nb, mine)
    _nbgrader("submit", ASSIGNMENT, "--course", "diffusion-lab", to_exchange, cwd=home)

    # the teacher: collect, grade, feedback
    _nbgrader("collect", ASSIGNMENT, to_exchange, cwd=course)
    assert (course / "submitted" / learner / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file()
    log = _nbgrader("autograde", ASSIGNMENT, f"--Execute.timeout={CELL_TIMEOUT}", cwd=course)
    assert "Timeout waiting for execute reply" in log  # 1.4's check, and the later cell that calls q_sample
    _nbgrader("generate_feedback", ASSIGNMENT, cwd=course)
    seconds = time.perf_counter() - started

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", course_id="diffusion-lab") as gb:
        scores = {n: gb.find_grade(f"check_{n.replace('.', '_')}", ASSIGNMENT, ASSIGNMENT, learner).score
                  for n in ("1.1", "1.2", "1.3", "1.4")}
        submission = gb.find_submission(ASSIGNMENT, learner)
        assert scores == {"1.1": 1, "1.2": 0, "1.3": 0, "1.4": 0}
        assert (submission.score, submission.max_score) == (1, 4)

    graded = nbformat.read(course / "autograded" / learner / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    shown = {c.metadata["nbgrader"]["grade_id"]: _shown(c) for c in graded.cells
             if c.metadata.get("nbgrader", {}).get("grade")}
    assert "✅ Exercise 1.1 passed" in shown["check_1_1"]
    assert "Exercise 1.2: for Var=1.0, beta=0.3 you gave 0.7, expected 1: the added noise has variance beta too" \
        in shown["check_1_2"]
    assert "Exercise 1.3: not done yet: replace the `raise NotImplementedError` with your code" in shown["check_1_3"]
    assert "CellTimeoutError: this cell ran past the time limit" in shown["check_1_4"]
    for key in ("1.2", "1.3", "1.4"):
        text = shown[f"check_{key.replace('.', '_')}"]
        assert "Traceback" not in text and "core.py" not in text, text
        assert not [line for line in _check_source(key) if line in text], f"check {key}'s source shows"
    feedback = (course / "feedback" / learner / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "the added noise has variance beta too" in feedback and "(Score: 1.0 / 4.0)" in feedback
    print(json.dumps({"round_trip_seconds": round(seconds, 1)}))
