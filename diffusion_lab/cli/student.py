"""Student copies of the chapters: solutions blanked, outputs cleared (chapter 00 explains exercises).

The committed chapters carry their solutions between nbgrader's markers::

    ### BEGIN SOLUTION
    return torch.sqrt(1 - beta) * x_prev + torch.sqrt(beta) * eps
    ### END SOLUTION

``make_student_copy`` replaces each such block by a line that raises ``NotImplementedError`` with
a clear message, keeping its indentation, so the exercise's check says "not done yet" until the
learner writes an answer; a comment says where the worked solution is. It never overwrites a copy
that exists (it may hold the learner's answers) unless asked to. Teachers who grade with nbgrader
build its course folder with ``tools/nbgrader_course.py`` (docs/teaching.md); its released copies blank
the same cells with the same stub.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
STUB = 'raise NotImplementedError("Your turn: write your answer here, then run the check below.")'


class SolutionMarkerError(ValueError):
    """The solution markers in a cell are unbalanced or nested."""


def blank_solutions(source: str, where: str = "cell", note: str = "") -> tuple[str, int]:
    """Replace every BEGIN/END SOLUTION block in ``source``; return (new source, blocks replaced).

    ``note``, if given, becomes a comment line under ``# YOUR CODE HERE`` (where the solution is).
    """
    out: list[str] = []
    inside = False
    opened_at = 0
    count = 0
    for lineno, line in enumerate(source.splitlines(keepends=True), start=1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise SolutionMarkerError(f"{where}, line {lineno}: '{BEGIN}' inside another solution block")
            inside = True
            opened_at = lineno
            count += 1
            indent = re.match(r"\s*", line).group(0)
            comment = f"{indent}# {note}\n" if note else ""
            out.append(f"{indent}# YOUR CODE HERE\n{comment}{indent}{STUB}\n")
        elif stripped == END:
            if not inside:
                raise SolutionMarkerError(f"{where}, line {lineno}: '{END}' without a '{BEGIN}' before it")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise SolutionMarkerError(f"{where}, line {opened_at}: '{BEGIN}' is never closed by '{END}'")
    return "".join(out), count


def solution_note(notebook: Path) -> str:
    """The comment a blanked exercise gets: where its worked solution is."""
    return f"The worked solution is in {notebook.parent.name}/{notebook.name} (the course's reference copy)."


def make_student_copy(notebook: str | Path, out_dir: str | Path, overwrite: bool = False) -> tuple[Path, int]:
    """Write ``out_dir/<name>.ipynb`` with solutions blanked and outputs cleared.

    Returns the path written and the number of solution blocks blanked. Refuses to overwrite the
    source notebook itself, and (``FileExistsError``) a copy already there unless ``overwrite``.
    """
    src = Path(notebook)
    if not src.is_file():
        raise FileNotFoundError(f"no notebook at {src}; pass a chapter such as chapters/01_forward_noising.ipynb")
    dest_dir = Path(out_dir)
    dest = dest_dir / src.name
    if dest.resolve() == src.resolve():
        raise ValueError(f"the student copy would overwrite {src}; choose another --out folder")
    if dest.exists() and not overwrite:
        raise FileExistsError(f"{dest} exists and may hold your answers; it was left as it is "
                              f"(pass --force to replace it with a fresh copy)")
    nb = nbformat.read(src, as_version=4)
    total = 0
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        cell.source, n = blank_solutions(cell.source, where=f"{src.name}, cell {i}", note=solution_note(src))
        total += n
        cell.outputs = []
        cell.execution_count = None
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".ipynb.tmp")
    nbformat.write(nb, tmp)
    tmp.replace(dest)
    return dest, total
