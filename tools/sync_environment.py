"""Write the conda environment files from pyproject.toml, so the pins live in one place.

    python tools/sync_environment.py          # rewrite environment.yml and environment-dev.yml
    python tools/sync_environment.py --check  # exit 1 if either is out of date

Conda provides Python and pip; everything else comes from the same exact pins as pip users get.
environment.yml is the learner's: the course package and its [lab] extra, no test tools.
environment-dev.yml adds the [dev] and [bench] extras, as `python3 course.py test` installs them.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# name -> (file, conda environment name, extras, how to use it)
ENVIRONMENTS = {
    "learner": (ROOT / "environment.yml", "diffusion-lab", ("lab",),
                "conda env create -f environment.yml && conda activate diffusion-lab && jupyter lab chapters/"),
    "dev": (ROOT / "environment-dev.yml", "diffusion-lab-dev", ("lab", "dev", "bench"),
            "conda env create -f environment-dev.yml && conda activate diffusion-lab-dev && python -m pytest"),
}
ENV_FILE = ENVIRONMENTS["learner"][0]
DEV_ENV_FILE = ENVIRONMENTS["dev"][0]


def pinned_requirements(pyproject: Path = ROOT / "pyproject.toml", extras: tuple[str, ...] = ("lab",)) -> list[str]:
    """Every pinned requirement of the package and the given extras, deduplicated, in order."""
    project = tomllib.loads(pyproject.read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    seen, out = set(), []
    for r in reqs:
        if r not in seen:
            seen.add(r)
            out.append(r)
    return out


def render(pyproject: Path = ROOT / "pyproject.toml", kind: str = "learner") -> str:
    _, name, extras, usage = ENVIRONMENTS[kind]
    python = tomllib.loads(pyproject.read_text())["project"]["requires-python"].removeprefix(">=")
    lines = [
        "# Generated from pyproject.toml by `python tools/sync_environment.py`; edit pins there, not here.",
        f"# {usage}",
        f"name: {name}",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        f"  - python={python}",
        "  - pip",
        "  - pip:",
        "      - -e .",
    ]
    lines += [f"      - {r}" for r in pinned_requirements(pyproject, extras)]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if an environment file is out of date")
    args = parser.parse_args()
    stale = []
    for kind, (path, *_) in ENVIRONMENTS.items():
        text = render(kind=kind)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
            continue
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print(f"{' and '.join(stale)} out of date: run `python tools/sync_environment.py`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
