"""Workshops: `course.py wheelhouse DIR` downloads the wheels once, `course.py lab --from DIR` installs from them
with no network. The install is tested for real, through course.py's own command line, in a fresh venv with
the index disabled, on a wheelhouse of tiny wheels made here (CI must not download PyTorch on every run):
the course stand-in, its dependencies and even its build backend come from the wheelhouse or nowhere.
The download side needs the network, so only what course.py asks pip for, and its errors, are tested."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEAD = "http://127.0.0.1:9"  # nothing listens there: any attempt to reach an index fails at once


def _load_course():
    spec = importlib.util.spec_from_file_location("course_for_wheelhouse", ROOT / "course.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


course = _load_course()

# A complete PEP 517/660 build backend in one module, so that building the stand-in course needs nothing
# from the network (the real course needs setuptools and wheel, which `course.py wheelhouse` downloads).
BACKEND = '''
import base64, hashlib, os, tomllib, zipfile


def write_wheel(out_dir, name, version, files, requires=(), extras=None):
    """A pure-Python wheel: files {path in wheel: text}; requires and extras {name: [requirement]}."""
    dist = f"{name.replace('-', '_')}-{version}"
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    meta += [f"Requires-Dist: {r}" for r in requires]
    for extra, reqs in (extras or {}).items():
        meta.append(f"Provides-Extra: {extra}")
        meta += [f'Requires-Dist: {r}; extra == "{extra}"' for r in reqs]
    files = {**files, f"{dist}.dist-info/METADATA": "\\n".join(meta) + "\\n",
             f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\\nGenerator: tinybackend\\nRoot-Is-Purelib: true\\n"
                                         "Tag: py3-none-any\\n"}
    record = []
    path = os.path.join(out_dir, f"{dist}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w") as zf:
        for arcname, text in files.items():
            data = text.encode()
            zf.writestr(arcname, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{arcname},sha256={digest},{len(data)}")
        record.append(f"{dist}.dist-info/RECORD,,")
        zf.writestr(f"{dist}.dist-info/RECORD", "\\n".join(record) + "\\n")
    return os.path.basename(path)


def _project():
    project = tomllib.load(open("pyproject.toml", "rb"))["project"]
    return project["name"], project["version"], project.get("dependencies", []), \\
        project.get("optional-dependencies", {})


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name, version, requires, extras = _project()
    package = name.replace("-", "_")
    files = {f"{package}/{f}": open(os.path.join(package, f)).read() for f in os.listdir(package)
             if f.endswith(".py")}
    return write_wheel(wheel_directory, name, version, files, requires, extras)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    name, version, requires, extras = _project()
    files = {f"_{name.replace('-', '_')}_editable.pth": os.path.abspath(".") + "\\n"}
    return write_wheel(wheel_directory, name, version, files, requires, extras)


def build_sdist(sdist_directory, config_settings=None):
    raise NotImplementedError("tinybackend builds wheels only")
'''


def _backend(tmp_path: Path):
    source = tmp_path / "tinybackend.py"
    source.write_text(BACKEND)
    spec = importlib.util.spec_from_file_location("tinybackend", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _course_stand_in(tmp_path: Path) -> Path:
    """A project shaped like the course: course.py beside a pyproject with pins, a [lab] and a [dev] extra."""
    project = tmp_path / "course"
    (project / "workshop_course").mkdir(parents=True)
    (project / "workshop_course" / "__init__.py").write_text("import tinydep\nVALUE = tinydep.VALUE + 1\n")
    (project / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["tinybackend==1.0"]
        build-backend = "tinybackend"

        [project]
        name = "workshop-course"
        version = "0.1.0"
        dependencies = ["tinydep==1.0"]

        [project.optional-dependencies]
        lab = ["tinylab==2.0"]
        dev = ["tinylab==2.0", "tinytest==0.3"]
        bench = []
    """))
    shutil.copy(ROOT / "course.py", project / "course.py")  # the real course.py, run from the project
    return project


def _offline_env(venv: Path, decoy: Path) -> dict[str, str]:
    """No network, and pip settings that would find the missing wheel: course.py must set them aside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "DIFFUSION_LAB_"))}
    env.update({"DIFFUSION_LAB_VENV": str(venv), "PIP_INDEX_URL": f"{DEAD}/simple", "PIP_FIND_LINKS": str(decoy),
                "http_proxy": DEAD, "https_proxy": DEAD, "HTTP_PROXY": DEAD, "HTTPS_PROXY": DEAD})
    return env


def _course(project: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(project / "course.py"), *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=240)


def test_install_from_a_wheelhouse_into_a_fresh_venv_with_no_index(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    wheelhouse, decoy = tmp_path / "wheelhouse", tmp_path / "decoy"
    wheelhouse.mkdir()
    decoy.mkdir()
    backend.write_wheel(str(wheelhouse), "tinybackend", "1.0", {"tinybackend.py": BACKEND})
    backend.write_wheel(str(wheelhouse), "tinydep", "1.0", {"tinydep/__init__.py": "VALUE = 41\n"})
    backend.write_wheel(str(wheelhouse), "tinytest", "0.3", {"tinytest.py": "OK = True\n"})
    lab_wheel = backend.write_wheel(str(decoy), "tinylab", "2.0", {"tinylab.py": "LAB = 'from the wheelhouse'\n"})
    project, venv = _course_stand_in(tmp_path), tmp_path / "venv"
    env = _offline_env(venv, decoy)
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")

    # 1. A wheel is missing (only the decoy, which pip's settings point at, has it): a clear message names it.
    result = _course(project, ["setup", "--from", str(wheelhouse)], env)
    assert result.returncode != 0
    assert "has no wheel of tinylab==2.0 for this machine" in result.stderr, result.stderr
    assert "python3 course.py wheelhouse" in result.stderr
    assert py.exists() and not (venv / ".diffusion_lab_installed").exists()

    # 2. The instructor adds it; the same command installs the course, editable, and its pins, offline.
    shutil.copy(decoy / lab_wheel, wheelhouse / lab_wheel)
    result = _course(project, ["setup", "--from", str(wheelhouse)], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "from the wheelhouse" in result.stdout and "with no network" in result.stdout
    probe = "import workshop_course, tinylab; print(workshop_course.VALUE, workshop_course.__file__, tinylab.LAB)"
    out = subprocess.run([str(py), "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == "42"
    assert Path(out.split()[1]).parent == project / "workshop_course"  # editable: the learner's folder
    assert "from the wheelhouse" in out

    # 3. The environment variable does the same as --from, here for the test tools of `setup --dev`.
    result = _course(project, ["setup", "--dev"], {**env, "DIFFUSION_LAB_WHEELHOUSE": str(wheelhouse)})
    assert result.returncode == 0, result.stdout + result.stderr
    subprocess.run([str(py), "-c", "import tinytest; assert tinytest.OK"], cwd=tmp_path, check=True)

    # 4. Installed already: --from has nothing to do, and says so.
    result = _course(project, ["setup", "--from", str(wheelhouse)], env)
    assert result.returncode == 0 and "already installed" in result.stdout


def test_a_damaged_or_absent_wheelhouse_stops_before_pip(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    with pytest.raises(SystemExit, match="holds no wheels"):
        course.check_wheelhouse(wheelhouse)
    with pytest.raises(SystemExit, match="no wheelhouse at"):
        course.check_wheelhouse(tmp_path / "not-there")

    name = backend.write_wheel(str(wheelhouse), "tinydep", "1.0", {"tinydep.py": "VALUE = 41\n"})
    manifest = course.write_manifest(wheelhouse, "linux-x86_64", "3.11", ["lab"], ["tinydep==1.0"])
    assert manifest["wheels"][name]["bytes"] == (wheelhouse / name).stat().st_size
    assert "--from" in (wheelhouse / "README.md").read_text()
    course.check_wheelhouse(wheelhouse)  # intact

    with (wheelhouse / name).open("ab") as f:
        f.write(b"\0")  # a bad copy from the USB stick
    with pytest.raises(SystemExit, match=f"{name} is damaged"):
        course.check_wheelhouse(wheelhouse)

    # A second platform goes into the same folder and the same manifest.
    course.write_manifest(wheelhouse, "windows-x86_64", "3.11", ["lab"], ["tinydep==1.0"])
    targets = json.loads((wheelhouse / "manifest.json").read_text())["targets"]
    assert [t["platform"] for t in targets] == ["linux-x86_64", "windows-x86_64"]


# ----- what `course.py wheelhouse` asks pip for ---------------------------------------------------------

def test_from_and_the_environment_variable() -> None:
    found, rest = course.take_wheelhouse(["--no-browser", "--from", "/w", "--port", "1"], environ={})
    assert found == Path("/w").resolve() and rest == ["--no-browser", "--port", "1"]
    assert course.take_wheelhouse(["--from=/w"], environ={})[0] == Path("/w").resolve()
    assert course.take_wheelhouse([], environ={"DIFFUSION_LAB_WHEELHOUSE": "/v"})[0] == Path("/v").resolve()
    assert course.take_wheelhouse(["--from", "/w"], environ={"DIFFUSION_LAB_WHEELHOUSE": "/v"})[0] == Path("/w").resolve()
    assert course.take_wheelhouse(["-k", "x"], environ={}) == (None, ["-k", "x"])


def test_the_wheelhouse_holds_every_pin_and_what_building_the_course_needs() -> None:
    lab = course.pinned_requirements(["lab"])
    assert {"torch==2.13.0", "jupyterlab==4.6.6", "setuptools>=68", "wheel", "pip"} <= set(lab)
    assert not any(r.startswith(("pytest", "ruff", "playwright")) for r in lab)
    assert "pytest==9.2.0" in course.pinned_requirements(["lab", "dev", "bench"])


def test_download_is_binary_only_for_the_chosen_platform_and_python() -> None:
    cmd = course.download_command(["pip"], Path("/w"), ["torch==2.13.0"], "windows-x86_64", "3.12", None)
    assert cmd[:4] == ["pip", "download", "--dest", "/w"] and cmd[-1] == "torch==2.13.0"
    assert "--only-binary=:all:" in cmd and "--extra-index-url" not in cmd
    flags = dict(zip(cmd[4::], cmd[5::]))
    assert flags["--python-version"] == "3.12" and flags["--abi"] == "cp312" and flags["--implementation"] == "cp"
    assert flags["--platform"] == "win_amd64"

    linux = course.download_command(["pip"], Path("/w"), [], "linux-x86_64", "3.11", course.TORCH_CPU_INDEX)
    tags = [linux[i + 1] for i, arg in enumerate(linux) if arg == "--platform"]
    assert tags[0] == "manylinux_2_28_x86_64" and "manylinux2014_x86_64" in tags
    assert not any(t.startswith("manylinux_2_3") for t in tags)  # glibc 2.28 at most: learners' distributions vary
    assert linux[linux.index("--extra-index-url") + 1] == course.TORCH_CPU_INDEX


def test_which_wheels_fit_which_platform() -> None:
    fits = course.wheel_fits
    mac_torch = "torch-2.13.0-cp311-none-macosx_11_0_arm64.whl"
    assert fits(mac_torch, "macos-arm64", "3.11")
    assert not fits(mac_torch, "windows-x86_64", "3.11") and not fits(mac_torch, "macos-arm64", "3.12")
    numpy = "numpy-2.4.6-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"
    assert fits(numpy, "linux-x86_64", "3.11") and not fits(numpy, "linux-aarch64", "3.11")
    assert not fits("debugpy-1.8-cp311-cp311-manylinux_2_34_x86_64.whl", "linux-x86_64", "3.11")
    assert fits("cffi-2.0-cp38-abi3-win_amd64.whl", "windows-x86_64", "3.11")
    assert not fits("x-1.0-cp311-cp311-macosx_14_0_arm64.whl", "macos-arm64", "3.11")  # newer than macOS 12
    assert fits("six-1.17.0-py2.py3-none-any.whl", "windows-x86_64", "3.13")


def test_markers_are_judged_for_the_target_not_this_machine() -> None:
    win, mac = course.marker_env("windows-x86_64", "3.11"), course.marker_env("macos-arm64", "3.11")
    assert course.marker_holds(' os_name == "nt"', win) and not course.marker_holds('os_name == "nt"', mac)
    assert course.marker_holds('platform_system == "Darwin"', mac)
    assert course.marker_holds('python_version < "3.12" and sys_platform != "emscripten"', win)
    assert not course.marker_holds('python_version < "3.9"', win)  # as versions: 3.11 is not below 3.9
    assert not course.marker_holds('extra == "test"', win)
    assert course.marker_holds("(sys_platform == 'win32' or sys_platform == 'cygwin') and python_version >= '3.8'", win)


def test_requirements_pip_skipped_on_this_machine_are_found(tmp_path: Path) -> None:
    """pip judges markers by the machine it runs on, so from Linux it skips Windows' pywinpty and the like."""
    backend = _backend(tmp_path)
    backend.write_wheel(str(tmp_path), "jupyter-server", "2.0", {"js.py": ""},
                        requires=['pywinpty>=2.0.1; os_name == "nt"', 'appnope; platform_system == "Darwin"',
                                  'tinydep; python_version >= "3.8"', 'pexpect; sys_platform != "win32"',
                                  'pytest-winpty; os_name == "nt" and extra == "test"'])
    backend.write_wheel(str(tmp_path), "tinydep", "1.0", {"tinydep.py": ""})
    assert course.missed_by_markers(tmp_path, "windows-x86_64", "3.11") == ["pywinpty>=2.0.1"]
    assert course.missed_by_markers(tmp_path, "macos-arm64", "3.11") == ["appnope", "pexpect"]


def _wheelhouse_cli(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update({"PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": f"{DEAD}/simple", "PIP_RETRIES": "1",
                "PIP_TIMEOUT": "2"})
    return subprocess.run([sys.executable, str(ROOT / "course.py"), "wheelhouse", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_wheelhouse_errors_are_clear(tmp_path: Path) -> None:
    result = _wheelhouse_cli([str(tmp_path / "w"), "--platform", "amiga"], tmp_path)
    assert result.returncode == 1 and "unknown platform 'amiga'" in result.stderr
    assert "macos-arm64" in result.stderr and not (tmp_path / "w").exists()

    (tmp_path / "file").write_text("")
    result = _wheelhouse_cli([str(tmp_path / "file" / "w")], tmp_path)
    assert result.returncode == 1 and "cannot write to" in result.stderr

    result = _wheelhouse_cli([str(tmp_path / "w"), "--platform", "windows-x86_64"], tmp_path)
    assert result.returncode == 1, result.stdout
    assert "could not reach the package index" in result.stderr and "run the same command again" in result.stderr
