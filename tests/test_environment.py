"""The pins live in pyproject.toml only; environment.yml (the learner's), environment-dev.yml, course.py and CI
follow from them."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
ENV_FILE = ROOT / "environment.yml"
DEV_ENV_FILE = ROOT / "environment-dev.yml"
# What only the tests need: the learner's environment.yml must not install these.
TEST_TOOLS = {"pytest", "pytest-timeout", "nbval", "playwright", "ruff"}
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(?P<version>[0-9][A-Za-z0-9.+!-]*)$")


def _sync_environment():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module("tools.sync_environment")


def _project() -> dict:
    return tomllib.loads(PYPROJECT.read_text())["project"]


def _all_requirements() -> list[tuple[str, str]]:
    """(where, requirement) for the dependencies and every extra."""
    project = _project()
    reqs = [("dependencies", r) for r in project["dependencies"]]
    for extra, items in project.get("optional-dependencies", {}).items():
        reqs += [(f"[{extra}]", r) for r in items]
    return reqs


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject_pins(extras: tuple[str, ...] | None = None) -> dict[str, str]:
    """name -> version for the dependencies and ``extras`` (every extra when None)."""
    pins: dict[str, str] = {}
    for where, req in _all_requirements():
        if where != "dependencies" and extras is not None and where.strip("[]") not in extras:
            continue
        m = PIN.match(req.strip())
        assert m, f"{where}: {req!r} is not pinned with =="
        name, version = _norm(m["name"]), m["version"]
        assert pins.setdefault(name, version) == version, f"{name} is pinned to both {pins[name]} and {version}"
    return pins


def _environment_pip_section(text: str) -> list[str]:
    """The entries under ``- pip:`` in environment.yml."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    indent = len(lines[start]) - len(lines[start].lstrip())
    entries = []
    for line in lines[start + 1 :]:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if len(line) - len(line.lstrip()) <= indent:
            break
        assert line.lstrip().startswith("- "), line
        entries.append(line.strip()[2:].strip())
    return entries


# ----- pins --------------------------------------------------------------------------------------

def test_sync_environment_check_passes() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "sync_environment.py"), "--check"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_environment_yml_is_rendered_from_pyproject() -> None:
    assert _sync_environment().render(PYPROJECT) == ENV_FILE.read_text()
    assert _sync_environment().render(PYPROJECT, kind="dev") == DEV_ENV_FILE.read_text()


@pytest.mark.parametrize(("where", "requirement"), _all_requirements(), ids=lambda v: str(v))
def test_every_requirement_is_pinned_exactly(where: str, requirement: str) -> None:
    assert PIN.match(requirement.strip()), f"{where}: {requirement!r} must be pinned with == (one exact version)"


def test_each_package_has_one_pin_across_extras() -> None:
    _pyproject_pins()


def test_torch_pinned_exactly() -> None:
    assert "torch==2.13.0" in _project()["dependencies"]
    assert _pyproject_pins()["torch"] == "2.13.0"


def _environment_pins(path: Path) -> dict[str, str]:
    entries = _environment_pip_section(path.read_text())
    assert entries[0] == "-e ."
    env_pins: dict[str, str] = {}
    for entry in entries[1:]:
        m = PIN.match(entry)
        assert m, f"{path.name}: {entry!r} is not pinned with =="
        assert _norm(m["name"]) not in env_pins, f"{path.name} lists {m['name']} twice"
        env_pins[_norm(m["name"])] = m["version"]
    return env_pins


def test_environment_pip_pins_equal_pyproject() -> None:
    """The learner's file has the dependencies and [lab]; the dev file every pin."""
    assert _environment_pins(ENV_FILE) == _pyproject_pins(("lab",))
    assert _environment_pins(DEV_ENV_FILE) == _pyproject_pins()


def test_learner_environment_has_no_test_tools() -> None:
    learner = set(_environment_pins(ENV_FILE))
    assert not learner & TEST_TOOLS, f"environment.yml installs test tools: {sorted(learner & TEST_TOOLS)}"
    assert TEST_TOOLS <= set(_environment_pins(DEV_ENV_FILE))
    assert {"torch", "jupyterlab", "ipykernel"} <= learner


def test_environment_python_matches_requires_python() -> None:
    minimum = _project()["requires-python"].removeprefix(">=")
    for path in (ENV_FILE, DEV_ENV_FILE):
        assert f"  - python={minimum}" in path.read_text().splitlines(), path.name


def test_drift_is_detected(tmp_path: Path) -> None:
    sync = _sync_environment()
    changed = tmp_path / "pyproject.toml"
    shutil.copy(PYPROJECT, changed)
    text = changed.read_text()
    assert '"numpy==' in text
    changed.write_text(re.sub(r'"numpy==[^"]+"', '"numpy==1.0.0"', text, count=1))

    for kind, path in (("learner", ENV_FILE), ("dev", DEV_ENV_FILE)):
        rendered = sync.render(changed, kind=kind)
        assert rendered != path.read_text()
        assert "numpy==1.0.0" in rendered
        assert sync.render(PYPROJECT, kind=kind) == path.read_text()


def test_dev_only_pin_change_is_detected_in_the_dev_file_only(tmp_path: Path) -> None:
    sync = _sync_environment()
    changed = tmp_path / "pyproject.toml"
    changed.write_text(re.sub(r'"ruff==[^"]+"', '"ruff==0.0.1"', PYPROJECT.read_text(), count=1))
    assert sync.render(changed) == ENV_FILE.read_text()
    assert "ruff==0.0.1" in sync.render(changed, kind="dev")


# ----- course.py and CI --------------------------------------------------------------------------

def test_course_help() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "course.py"), "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "course.py lab" in result.stdout
    assert "course.py test" in result.stdout


def test_course_unknown_command() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "course.py"), "frobnicate"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "unknown command 'frobnicate'" in result.stderr


def test_ci_runs_the_course_test_command() -> None:
    run = (ROOT / ".ci" / "run").read_text()
    commands = [line.strip() for line in run.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert "python3 course.py test" in commands


def test_readme_gives_the_ci_test_command() -> None:
    readme = ROOT / "README.md"
    if not readme.exists():
        pytest.skip("no README.md yet")
    assert "python3 course.py test" in readme.read_text()
    assert "course.py test" in (ROOT / ".ci" / "run").read_text()
