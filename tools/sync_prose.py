"""Copy prose edits from chapters/NN_name.py into the paired .ipynb without re-running the chapter.

    python tools/sync_prose.py            # every chapter
    python tools/sync_prose.py 01 07      # chapters whose names start with 01 or 07

A markdown cell has no outputs, so a change to one needs no new run: this writes the twin's markdown
into the notebook and keeps every output. It refuses when a *code* cell differs (its saved outputs
would no longer be what that code prints): rebuild such a chapter with tools/build_chapters.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jupytext
import nbformat

CHAPTERS = Path(__file__).resolve().parents[1] / "chapters"


def sync(py: Path) -> tuple[int, list[int]]:
    """Update ``py``'s notebook in place; return (markdown cells updated, code cells that differ)."""
    nb_path = py.with_suffix(".ipynb")
    nb, twin = nbformat.read(nb_path, as_version=4), jupytext.read(py)
    kinds = [c.cell_type for c in nb.cells], [c.cell_type for c in twin.cells]
    if kinds[0] != kinds[1]:
        return 0, [-1]  # cells were added, removed or reordered: only a rebuild can pair them
    code = [i for i, (a, b) in enumerate(zip(nb.cells, twin.cells)) if a.cell_type == "code" and a.source != b.source]
    if code:
        return 0, code
    updated = 0
    for a, b in zip(nb.cells, twin.cells):
        if a.source != b.source:
            a.source, updated = b.source, updated + 1
    if updated:
        nbformat.write(nb, nb_path)
        py.write_text(jupytext.writes(jupytext.read(nb_path), fmt="py:percent"))  # canonical twin
    return updated, []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapters", nargs="*", help="chapter number prefixes, e.g. 01 (default: all)")
    args = parser.parse_args()
    status = 0
    for py in sorted(CHAPTERS.glob("[0-9][0-9]_*.py")):
        if args.chapters and not any(py.name.startswith(p) for p in args.chapters):
            continue
        updated, code = sync(py)
        if code:
            where = "the cells were added or reordered" if code == [-1] else f"code cells {code} changed"
            print(f"{py.name}: {where}; rebuild it with tools/build_chapters.py {py.name[:2]}", file=sys.stderr)
            status = 1
        else:
            print(f"{py.name}: {updated} markdown cell(s) updated")
    return status


if __name__ == "__main__":
    sys.exit(main())
