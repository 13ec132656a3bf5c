"""Regenerate chapters/NN_name.ipynb from chapters/NN_name.py with the outputs of a full run.

    python tools/build_chapters.py                 # every chapter, full mode (what is committed)
    python tools/build_chapters.py 01 02           # chapters whose names start with 01 or 02
    python tools/build_chapters.py --quick 01      # quick mode, for a fast look (do not commit)

Each notebook is executed in a fresh kernel from inside chapters/, live-only outputs are replaced by
their static pictures, and the result is written next to its .py twin (which is rewritten in
jupytext's canonical form, so the pair always agrees). The notebook must stay under
2 MB so that a classroom can clone the course over one Wi-Fi.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jupytext

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tools.notebooks import execute, output_size, read_chapter, strip_live_only  # noqa: E402

CHAPTERS = Path(__file__).resolve().parents[1] / "chapters"
MAX_BYTES = 2_000_000


def chapter_sources(prefixes: list[str]) -> list[Path]:
    sources = sorted(CHAPTERS.glob("[0-9][0-9]_*.py"))
    if prefixes:
        sources = [p for p in sources if any(p.name.startswith(x) for x in prefixes)]
    return sources


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapters", nargs="*", help="chapter number prefixes, e.g. 01 (default: all)")
    parser.add_argument("--quick", action="store_true", help="run in quick mode")
    args = parser.parse_args()
    sources = chapter_sources(args.chapters)
    if not sources:
        print(f"no chapter matches {args.chapters}", file=sys.stderr)
        return 2
    status = 0
    for py in sources:
        nb = read_chapter(py)
        seconds = execute(nb, CHAPTERS, quick=args.quick)
        strip_live_only(nb)
        size = output_size(nb)
        out = py.with_suffix(".ipynb")
        jupytext.write(nb, out)
        jupytext.write(nb, py, fmt="py:percent")  # normalise the twin (header, cell markers)
        flag = "" if size <= MAX_BYTES else "  <-- over the 2 MB budget"
        print(f"{out.name}: {seconds:.1f} s ({'quick' if args.quick else 'full'}), {size / 1e6:.2f} MB{flag}")
        status |= size > MAX_BYTES
    return status


if __name__ == "__main__":
    sys.exit(main())
