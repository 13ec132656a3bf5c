"""Colab and Kaggle: the set-up cell (tools/cloud_cell.py) and the supported torch range (cli/torch_support.py).

The cell is run here with the services' markers simulated (their environment variables; a fake
``google.colab`` module), cloning a tiny git repository made in the test instead of GitHub and recording
the pip commands instead of running them. What only the services can show (their git, pip, torch and GPU;
whether ``google.colab`` is in ``sys.modules`` there) is not tested here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import types
from importlib.metadata import version
from pathlib import Path

import jupytext
import nbformat
import pytest

from diffusion_lab.cli import torch_support
from diffusion_lab.cli.torch_support import UnsupportedTorchError, check_torch_version, is_supported
from tools import cloud_cell

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
MARKERS = ("COLAB_RELEASE_TAG", "KAGGLE_KERNEL_RUN_TYPE")
REAL_RUN = subprocess.run


def _project() -> dict:
    return tomllib.loads(PYPROJECT.read_text())


def _first_code(nb) -> str:
    return next(c.source for c in nb.cells if c.cell_type == "code")


# ----- the cell, run with simulated services -----------------------------------------------------------

class Recorder:
    """Stands in for subprocess.run: git runs for real (on a local repository), pip is recorded."""

    def __init__(self, pip_fails: bool = False):
        self.calls: list[list[str]] = []
        self.pip_fails = pip_fails

    def __call__(self, cmd, **kwargs):
        self.calls.append(list(cmd))
        if cmd[0] == "git":
            return REAL_RUN(cmd, **kwargs)
        assert cmd[1:4] == ["-m", "pip", "install"], cmd
        return subprocess.CompletedProcess(cmd, 1 if self.pip_fails else 0, "", "ERROR: no network" if
                                           self.pip_fails else "")

    def of(self, tool: str) -> list[list[str]]:
        return [c for c in self.calls if (c[0] == "git") == (tool == "git")]


@pytest.fixture
def course_url(tmp_path: Path) -> str:
    """A tiny repository with a chapters/ folder, as a file:// address (``--depth`` works with those)."""
    src = tmp_path / "origin"
    (src / "chapters").mkdir(parents=True)
    (src / "chapters" / "00_welcome.ipynb").write_text("{}")
    git = ["git", "-C", str(src), "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false"]
    for args in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "course"]):
        REAL_RUN(git + args, check=True, capture_output=True)
    return src.as_uri()


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No service markers, HOME in tmp, and cwd / sys.path restored afterwards; returns HOME."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in MARKERS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return home


def _run_cell(source: str) -> None:
    exec(compile(source, "set-up cell", "exec"), {"__name__": "__main__"})


def _simulate(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if service == "colab (module)":
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.setenv({"colab (env)": "COLAB_RELEASE_TAG", "kaggle": "KAGGLE_KERNEL_RUN_TYPE"}[service], "x")


def test_the_chapters_cell_does_nothing_elsewhere(sandbox: Path, monkeypatch, capfd) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError(f"the set-up cell ran {args} outside Colab and Kaggle")

    monkeypatch.setattr(subprocess, "run", refuse)
    cwd, path = Path.cwd(), list(sys.path)
    _run_cell(_first_code(jupytext.read(ROOT / "chapters" / "00_welcome.py")))
    assert capfd.readouterr() == ("", "")
    assert Path.cwd() == cwd and sys.path == path and not any(sandbox.iterdir())


@pytest.mark.parametrize("service", ["kaggle", "colab (env)", "colab (module)"])
def test_on_a_service_it_clones_installs_and_moves_in_once(service, sandbox, course_url, monkeypatch, capsys) -> None:
    _simulate(service, monkeypatch)
    runner = Recorder()
    monkeypatch.setattr(subprocess, "run", runner)
    cell = cloud_cell.cell_source(course_url, cloud_cell.cloud_requirements())
    repo = sandbox / "diffusion-lab"

    _run_cell(cell)
    assert runner.of("git") == [["git", "clone", "--depth", "1", course_url, str(repo)]]
    assert (repo / "chapters" / "00_welcome.ipynb").exists() and (repo / ".installed").exists()
    needs, course = runner.of("pip")
    assert needs[4:] == ["--quiet", f"torch=={version('torch')}", *cloud_cell.cloud_requirements()]
    assert course[4:] == ["--quiet", "--no-deps", "-e", str(repo)]
    assert Path.cwd() == repo / "chapters" and sys.path[0] == str(repo)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and "fetched and installed" in out[0] and version("torch") in out[0]

    _run_cell(cell)  # again: no clone, no pip, same place
    assert len(runner.calls) == 3 and sys.path.count(str(repo)) == 1 and Path.cwd() == repo / "chapters"
    assert capsys.readouterr().out.startswith(f"diffusion-lab: found {repo}")


def test_the_torch_of_the_service_is_never_replaced(sandbox, course_url, monkeypatch) -> None:
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    runner = Recorder()
    monkeypatch.setattr(subprocess, "run", runner)
    _run_cell(cloud_cell.cell_source(course_url, cloud_cell.cloud_requirements()))
    for cmd in runner.of("pip"):
        torch_args = [a for a in cmd if a.startswith("torch")]
        assert "--no-deps" in cmd or torch_args == [f"torch=={version('torch')}"], cmd
        assert not any("==" in a for a in cmd if not a.startswith("torch")), f"pins would replace packages: {cmd}"
        assert "-U" not in cmd and "--upgrade" not in cmd


def test_a_failed_clone_says_what_to_do(sandbox, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    runner = Recorder()
    monkeypatch.setattr(subprocess, "run", runner)
    cwd = Path.cwd()
    with pytest.raises(RuntimeError, match="(?s)git clone .* failed: .*\nIs this session online\\? On Kaggle"):
        _run_cell(cloud_cell.cell_source((tmp_path / "no-such-repo").as_uri(), ["numpy"]))
    assert runner.of("pip") == [] and Path.cwd() == cwd


def test_a_failed_install_is_retried_without_cloning_again(sandbox, course_url, monkeypatch, capsys) -> None:
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab")
    cell = cloud_cell.cell_source(course_url, ["numpy"])
    monkeypatch.setattr(subprocess, "run", Recorder(pip_fails=True))
    with pytest.raises(RuntimeError, match="ERROR: no network\nRun this cell again"):
        _run_cell(cell)
    assert not (sandbox / "diffusion-lab" / ".installed").exists()
    runner = Recorder()
    monkeypatch.setattr(subprocess, "run", runner)
    _run_cell(cell)
    assert runner.of("git") == [] and len(runner.of("pip")) == 2
    assert (sandbox / "diffusion-lab" / ".installed").exists()


# ----- every chapter carries the current cell; README and pyproject agree ---------------------------------

def test_requirements_there_keep_the_services_torch_and_front_end() -> None:
    needs = cloud_cell.cloud_requirements()
    assert "torch" not in needs and not {"jupyterlab", "ipykernel", "jupytext"} & set(needs)
    assert {"numpy", "safetensors", "diffusers"} <= set(needs) and all("=" not in n for n in needs)


@pytest.mark.parametrize("py", cloud_cell.chapter_sources(), ids=lambda p: p.stem)
def test_every_chapter_starts_with_the_current_cell(py: Path) -> None:
    want = cloud_cell.cell_source(cloud_cell.repository_url(), cloud_cell.cloud_requirements())
    assert json.dumps(_project()["project"]["urls"]["Repository"]) in want
    fix = "run `python tools/cloud_cell.py`"
    assert _first_code(jupytext.read(py)) == want, f"{py.name}: the set-up cell is missing or old; {fix}"
    if py.with_suffix(".ipynb").exists():
        nb = nbformat.read(py.with_suffix(".ipynb"), as_version=4)
        cells = [c for c in nb.cells if cloud_cell.is_setup_cell(c)]
        assert len(cells) == 1 and cells[0].source == want and _first_code(nb) == want, fix
        assert cells[0].outputs == [], "the saved set-up cell must show no output (it prints nothing there)"


def test_readme_links_follow_pyproject() -> None:
    url = _project()["project"]["urls"]["Repository"]
    readme = (ROOT / "README.md").read_text()
    block = cloud_cell.readme_block(url, cloud_cell.readme_notebooks())
    assert block in readme, "README's Colab / Kaggle links are out of date: run `python tools/cloud_cell.py`"
    owner_name = url.removeprefix("https://github.com/")
    assert f"colab.research.google.com/github/{owner_name}/blob/main/chapters/00_welcome.ipynb" in block
    assert f"kernels/welcome?src={url}/blob/main/chapters/00_welcome.ipynb" in block
    assert all(f"chapters/{p.name}" in block for p in (ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))


def test_tool_check_passes_and_detects_a_new_address(tmp_path: Path, capsys) -> None:
    assert cloud_cell.main(["--check"]) == 0
    moved = tmp_path / "pyproject.toml"
    moved.write_text(PYPROJECT.read_text().replace("github.com/diffusion-lab/diffusion-lab", "github.com/me/course"))
    url = cloud_cell.repository_url(moved)
    assert url == "https://github.com/me/course"
    assert cloud_cell.readme_block(url, cloud_cell.readme_notebooks()) not in (ROOT / "README.md").read_text()
    chapter = tmp_path / "chapters" / "01_forward_noising.py"
    chapter.parent.mkdir()
    for suffix in (".py", ".ipynb"):
        chapter.with_suffix(suffix).write_bytes((ROOT / "chapters" / chapter.name).with_suffix(suffix).read_bytes())
    new = cloud_cell.cell_source(url, cloud_cell.cloud_requirements(moved))
    assert cloud_cell.update_chapter(chapter, new) == [chapter, chapter.with_suffix(".ipynb")]
    assert cloud_cell.update_chapter(chapter, new) == []  # rerun: nothing to do
    nb = jupytext.read(chapter.with_suffix(".ipynb"))
    assert jupytext.writes(nb, fmt="py:percent") == chapter.read_text()  # still a canonical pair
    assert '"https://github.com/me/course"' in _first_code(nb)


def test_inserting_keeps_outputs_and_renumbers_as_a_run_would() -> None:
    out = nbformat.v4.new_output("execute_result", data={"text/plain": "2"}, execution_count=1)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 01"),
                                         nbformat.v4.new_code_cell("1 + 1", execution_count=1, outputs=[out]),
                                         nbformat.v4.new_code_cell("x = 1", execution_count=2)])
    cell = cloud_cell.cell_source("https://github.com/a/b", ["numpy"])
    assert cloud_cell.with_setup_cell(nb, cell)
    assert [c.source for c in nb.cells] == ["# 01", cell, "1 + 1", "x = 1"]
    assert [c.get("execution_count") for c in nb.cells[1:]] == [1, 2, 3]
    assert nb.cells[1].outputs == [] and nb.cells[1].id == "cloud-setup"
    assert nb.cells[2].outputs[0]["data"] == {"text/plain": "2"} and nb.cells[2].outputs[0]["execution_count"] == 2
    nbformat.validate(nb)
    assert not cloud_cell.with_setup_cell(nb, cell)  # idempotent
    newer = cloud_cell.cell_source("https://github.com/a/c", ["numpy"])
    assert cloud_cell.with_setup_cell(nb, newer) and nb.cells[1].source == newer and len(nb.cells) == 4
    assert [c.get("execution_count") for c in nb.cells[1:]] == [1, 2, 3]


def test_bad_addresses_are_refused_clearly(tmp_path: Path) -> None:
    text = PYPROJECT.read_text()
    bad = tmp_path / "pyproject.toml"
    bad.write_text(text.replace('Repository = "https://github.com/diffusion-lab/diffusion-lab"',
                                'Repository = "https://gitlab.com/me/course"'))
    with pytest.raises(ValueError, match="not a GitHub address"):
        cloud_cell.repository_url(bad)
    bad.write_text(text.replace('Repository = "https://github.com/diffusion-lab/diffusion-lab"', ""))
    with pytest.raises(ValueError, match=r"no Repository under \[project.urls\]"):
        cloud_cell.repository_url(bad)


# ----- the supported torch range --------------------------------------------------------------------------

def test_range_and_pin_have_one_source() -> None:
    project = _project()
    assert torch_support.SUPPORTED_TORCH == project["tool"]["diffusion_lab"]["supported-torch"], \
        "copy pyproject's [tool.diffusion_lab] supported-torch into diffusion_lab/cli/torch_support.py"
    assert f"torch=={torch_support.TESTED_TORCH}" in project["project"]["dependencies"]
    assert is_supported(torch_support.TESTED_TORCH), "the pinned torch must be inside the supported range"
    assert torch_support.installed_torch_version().startswith(torch_support.TESTED_TORCH)


@pytest.mark.parametrize("good", ["2.13.0", "2.13.0+cpu", "2.13.0+cu126", "2.5.0", "2.14.0.dev20270101", "2.99.1"])
def test_supported_versions_pass(good: str, monkeypatch) -> None:
    monkeypatch.delenv(torch_support.ANY_TORCH_ENV, raising=False)
    check_torch_version(good)


@pytest.mark.parametrize("bad", ["2.4.1", "2.4.1+cu121", "1.13.1", "3.0.0", "3.0.0a0", "3"])
def test_unsupported_versions_fail_with_a_clear_message(bad: str, monkeypatch) -> None:
    monkeypatch.delenv(torch_support.ANY_TORCH_ENV, raising=False)
    with pytest.raises(UnsupportedTorchError) as err:
        check_torch_version(bad)
    msg = str(err.value)
    assert f"found torch {bad}" in msg and "supports torch >=2.5,<3" in msg
    assert "python3 course.py lab" in msg and "DIFFUSION_LAB_ANY_TORCH=1" in msg and "\n" not in msg


def test_the_escape_hatch_warns_instead(monkeypatch) -> None:
    monkeypatch.setenv(torch_support.ANY_TORCH_ENV, "1")
    with pytest.warns(UserWarning, match="torch 2.1.0 is outside the supported range"):
        check_torch_version("2.1.0")
    monkeypatch.setenv(torch_support.ANY_TORCH_ENV, "perhaps")
    with pytest.raises(UnsupportedTorchError, match="'perhaps' is not understood"):
        check_torch_version("2.1.0")


def test_unreadable_versions_and_ranges_are_errors() -> None:
    with pytest.raises(UnsupportedTorchError, match="cannot read a version number from 'banana'"):
        check_torch_version("banana")
    with pytest.raises(ValueError, match="cannot read '~=2.5'"):
        is_supported("2.5.0", ">=2.0,~=2.5")


def _import_with_torch(torch_version: str, **env: str) -> subprocess.CompletedProcess:
    fake = f"import sys, types; t = types.ModuleType('torch'); t.__version__ = {torch_version!r}; " \
           f"sys.modules['torch'] = t; import diffusion_lab; print('imported')"
    base = {k: v for k, v in os.environ.items() if k != torch_support.ANY_TORCH_ENV}
    return REAL_RUN([sys.executable, "-c", fake], cwd=ROOT, capture_output=True, text=True, timeout=60,
                    env={**base, **env})


def test_import_stops_on_an_unsupported_torch() -> None:
    old = _import_with_torch("2.3.1")
    assert old.returncode == 1 and "imported" not in old.stdout
    assert old.stderr.strip().splitlines()[-1].startswith(
        "diffusion_lab.cli.torch_support.UnsupportedTorchError: diffusion_lab supports torch >=2.5,<3 and found "
        "torch 2.3.1")
    anyway = _import_with_torch("3.1.0", DIFFUSION_LAB_ANY_TORCH="1")
    assert anyway.returncode == 0 and anyway.stdout == "imported\n" and "outside the supported range" in anyway.stderr
    assert _import_with_torch("2.13.0+cu128").stdout == "imported\n"
