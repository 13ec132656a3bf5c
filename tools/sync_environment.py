"""Write environment.yml from pyproject.toml, so the pins live in one place.

    python tools/sync_environment.py          # rewrite environment.yml
    python tools/sync_environment.py --check  # exit 1 if environment.yml is out of date

Conda provides Python and pip; everything else comes from the same exact pins as pip users get
(the course package itself plus its [lab] and [dev] extras).
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV_FILE = ROOT / "environment.yml"


def pinned_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """Every pinned requirement of the package and its lab and dev extras, deduplicated, in order."""
    project = tomllib.loads(pyproject.read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in ("lab", "dev", "bench"):
        reqs += project["optional-dependencies"][extra]
    seen, out = set(), []
    for r in reqs:
        if r not in seen:
            seen.add(r)
            out.append(r)
    return out


def render(pyproject: Path = ROOT / "pyproject.toml") -> str:
    python = tomllib.loads(pyproject.read_text())["project"]["requires-python"].removeprefix(">=")
    lines = [
        "# Generated from pyproject.toml by `python tools/sync_environment.py`; edit pins there, not here.",
        "# conda env create -f environment.yml && conda activate diffusion-lab && jupyter lab chapters/",
        "name: diffusion-lab",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        f"  - python={python}",
        "  - pip",
        "  - pip:",
        "      - -e .",
    ]
    lines += [f"      - {r}" for r in pinned_requirements(pyproject)]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if environment.yml is out of date")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not ENV_FILE.exists() or ENV_FILE.read_text() != text:
            print("environment.yml is out of date: run `python tools/sync_environment.py`", file=sys.stderr)
            return 1
        return 0
    ENV_FILE.write_text(text)
    print(f"wrote {ENV_FILE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
