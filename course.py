#!/usr/bin/env python3
"""Set up and run diffusion-lab with one command. Needs only Python 3.11+ (standard library).

    python3 course.py lab     # first time: make .venv and install the course; then open JupyterLab
                              # in workspace/, your own copies of the chapters with the exercises blank
    python3 course.py test    # make .venv with the test tools and run the whole test suite
    python3 course.py setup   # only install (add --dev for the test tools)

Extra arguments after `lab` go to JupyterLab (e.g. `--no-browser --port 8890`), after `test` to pytest
(e.g. `-k schedules`). Set DIFFUSION_LAB_VENV to put the virtual environment somewhere else.

The workspace is made on the first `lab` and is yours: a later start never replaces a notebook in it,
it only adds chapters that are new since. The worked solutions stay in chapters/, with their outputs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("DIFFUSION_LAB_VENV", ROOT / ".venv"))
CHAPTERS = ROOT / "chapters"
WORKSPACE = ROOT / "workspace"
MIN_PYTHON = (3, 11)


def say(msg: str) -> None:
    print(f"[course] {msg}", flush=True)


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def run(cmd: list[str], **kwargs) -> None:
    result = subprocess.run(cmd, **kwargs)
    if result.returncode != 0:
        sys.exit(f"[course] this step failed (exit {result.returncode}): {' '.join(map(str, cmd))}")


def ensure_venv(extras: str) -> Path:
    """Create the virtual environment and install the course with ``extras``, once per pyproject change."""
    if sys.version_info < MIN_PYTHON:
        sys.exit(f"[course] Python {'.'.join(map(str, MIN_PYTHON))} or newer is needed; this is {sys.version.split()[0]}")
    py = venv_python()
    if not py.exists():
        say(f"creating a virtual environment in {VENV}")
        run([sys.executable, "-m", "venv", str(VENV)])
    stamp = VENV / ".diffusion_lab_installed"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    have = stamp.read_text().split() if stamp.exists() else []
    if want not in have:
        say(f"installing the course and its pinned dependencies [{extras}] (a few minutes the first time)")
        run([str(py), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
        run([str(py), "-m", "pip", "install", "--quiet", "-e", f".[{extras}]"], cwd=ROOT)
        stamp.write_text(" ".join(have + [want]))
    return py


def ensure_chromium() -> None:
    """The browser tests drive Debian's Chromium; install it where we can (Debian/Ubuntu as root)."""
    if shutil.which("chromium") or Path("/usr/bin/chromium").exists():
        return
    if sys.platform.startswith("linux") and shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        say("installing Chromium for the browser tests (apt-get install chromium)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-qq"], env=env)
        run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, stdout=subprocess.DEVNULL)
    else:
        say("Chromium not found: the browser tests will be skipped (install the 'chromium' package to run them)")


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def new_chapters(chapters: Path, workspace: Path) -> list[Path]:
    """The chapters that have no copy in ``workspace`` yet (a copy there is never replaced)."""
    return [nb for nb in sorted(chapters.glob("[0-9][0-9]_*.ipynb")) if not (workspace / nb.name).exists()]


def prepare_workspace(python: Path | str, chapters: Path = CHAPTERS, workspace: Path = WORKSPACE) -> list[str]:
    """Give the learner their own copies of the chapters, solutions blanked and outputs cleared: every
    chapter on the first start, later only chapters that are new. Returns the names of the copies made."""
    first = not workspace.exists()
    new = new_chapters(chapters, workspace)
    if new:  # the package writes the copies (course.py itself needs only the standard library)
        run([str(python), "-m", "diffusion_lab", "student", *map(str, new), "--out", str(workspace)], cwd=ROOT,
            stdout=subprocess.DEVNULL)
    names = [nb.name for nb in new]
    if first:
        say(f"made your workspace, {_shown(workspace)}/: your own copies of the {len(names)} chapters, exercises "
            f"blank; the worked solutions stay in {_shown(chapters)}/")
    elif new:
        say(f"added {len(names)} new chapter(s) to {_shown(workspace)}/: {', '.join(names)}; "
            f"your other notebooks are as you left them")
    else:
        say(f"your workspace, {_shown(workspace)}/, is as you left it")
    return names


def jupyter_command(python: Path | str, rest: list[str], as_root: bool) -> list[str]:
    """JupyterLab opening the workspace's first chapter; as root it needs --allow-root to start at all."""
    cmd = [str(python), "-m", "jupyter", "lab", f"{_shown(WORKSPACE)}/00_welcome.ipynb", *rest]
    if as_root and "--allow-root" not in rest:
        say("running as root (as in many containers): starting JupyterLab with --allow-root")
        cmd.append("--allow-root")
    return cmd


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "setup":
        ensure_venv("dev,bench" if "--dev" in rest else "lab")
        say("done; start the course with: python3 course.py lab")
        return 0
    if command == "lab":
        py = ensure_venv("lab")
        prepare_workspace(py)
        cmd = jupyter_command(py, rest, as_root=hasattr(os, "geteuid") and os.geteuid() == 0)
        say("opening JupyterLab; stop it with Ctrl-C")
        return subprocess.call(cmd, cwd=ROOT)
    if command == "test":
        py = ensure_venv("dev,bench")
        ensure_chromium()
        return subprocess.call([str(py), "-m", "pytest", *rest], cwd=ROOT)
    print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
