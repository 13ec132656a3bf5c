#!/usr/bin/env python3
"""Set up and run diffusion-lab with one command. Needs only Python 3.11+ (standard library).

    python3 course.py lab     # first time: make .venv and install the course; then open JupyterLab
                              # in workspace/, your own copies of the chapters with the exercises blank
    python3 course.py test    # make .venv with the test tools and run the whole test suite
    python3 course.py setup   # only install (add --dev for the test tools)
    python3 course.py imagine # chapter 11's /imagine alone as a web page (Voila), e.g. on a projector

Extra arguments after `lab` go to JupyterLab (e.g. `--no-browser --port 8890`), after `imagine` to Voila
(e.g. `--port 8870`, or `--Voila.ip=0.0.0.0` to let the room open it), after `test` to pytest
(e.g. `-k schedules`). Set DIFFUSION_LAB_VENV to put the virtual environment somewhere else.

The workspace is made on the first `lab` and is yours: a later start never replaces a notebook in it,
it only adds chapters that are new since. The worked solutions stay in chapters/, with their outputs.

Workshops with bad Wi-Fi: download every wheel once, then install with no network at all.

    python3 course.py wheelhouse DIR [--platform P] [--python 3.11] [--dev] [--torch-index URL|none]
                              # P: linux-x86_64, linux-aarch64, macos-arm64 or windows-x86_64
                              # (default: this machine); --dev adds the test tools
    python3 course.py lab --from DIR   # install from DIR only (pip --no-index); so do setup and test.
                              # Or set DIFFUSION_LAB_WHEELHOUSE=DIR.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import hashlib
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from email.parser import HeaderParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("DIFFUSION_LAB_VENV", ROOT / ".venv"))
CHAPTERS = ROOT / "chapters"
WORKSPACE = ROOT / "workspace"
IMAGINE_APP = ROOT / "apps" / "imagine.ipynb"
MIN_PYTHON = (3, 11)
WHEELHOUSE_ENV = "DIFFUSION_LAB_WHEELHOUSE"


def say(msg: str) -> None:
    print(f"[course] {msg}", flush=True)


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def run(cmd: list[str], **kwargs) -> None:
    result = subprocess.run(cmd, **kwargs)
    if result.returncode != 0:
        sys.exit(f"[course] this step failed (exit {result.returncode}): {' '.join(map(str, cmd))}")


def ensure_venv(extras: str, wheelhouse: Path | None = None) -> Path:
    """Create the virtual environment and install the course with ``extras``, once per pyproject change.
    With ``wheelhouse``, every package comes from that folder and nothing from the network."""
    if sys.version_info < MIN_PYTHON:
        sys.exit(f"[course] Python {'.'.join(map(str, MIN_PYTHON))} or newer is needed; this is {sys.version.split()[0]}")
    py = venv_python()
    stamp = VENV / ".diffusion_lab_installed"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    have = stamp.read_text().split() if stamp.exists() else []
    if wheelhouse is not None and want not in have:
        check_wheelhouse(wheelhouse)  # before making anything
    if not py.exists():
        say(f"creating a virtual environment in {VENV}")
        run([sys.executable, "-m", "venv", str(VENV)])
    if want not in have:
        if wheelhouse is None:
            say(f"installing the course and its pinned dependencies [{extras}] (a few minutes the first time)")
            run([str(py), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
            run([str(py), "-m", "pip", "install", "--quiet", "-e", f".[{extras}]"], cwd=ROOT)
        else:
            say(f"installing the course [{extras}] from the wheelhouse {wheelhouse}, with no network")
            if any(wheelhouse.glob("pip-*.whl")):
                pip_offline(py, wheelhouse, ["--upgrade", "pip"])
            pip_offline(py, wheelhouse, ["-e", f".[{extras}]"])
        stamp.write_text(" ".join(have + [want]))
    elif wheelhouse is not None:
        say(f"the course [{extras}] is already installed in {VENV}; nothing to take from the wheelhouse")
    return py


# ----- workshops: a wheelhouse made once, installed from with no network ----------------------------

# What a wheelhouse can be made for. pip's --platform takes exact tags, so the older manylinux tags are
# listed too (manylinux2014 expands to 2010 and 1 by itself); "markers" are the values PEP 508 markers see
# there, which pip cannot be told (it judges `; sys_platform == "win32"` by the machine it runs on).
PLATFORMS = {
    "linux-x86_64": {
        "about": "Linux on Intel/AMD with glibc 2.28 or newer (Ubuntu 20.04+, Debian 10+, Fedora, RHEL 8+)",
        "tags": [f"manylinux_2_{n}_x86_64" for n in range(28, 4, -1)] + ["manylinux2014_x86_64"],
        "markers": {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
                    "platform_machine": "x86_64"},
    },
    "linux-aarch64": {
        "about": "Linux on 64-bit ARM with glibc 2.28 or newer",
        "tags": [f"manylinux_2_{n}_aarch64" for n in range(28, 16, -1)] + ["manylinux2014_aarch64"],
        "markers": {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
                    "platform_machine": "aarch64"},
    },
    "macos-arm64": {
        "about": "macOS 12 or newer on Apple silicon (M1 and later)",
        "tags": ["macosx_12_0_arm64"],  # pip adds 11.0 and the universal2 tags itself
        "markers": {"sys_platform": "darwin", "platform_system": "Darwin", "os_name": "posix",
                    "platform_machine": "arm64"},
    },
    "windows-x86_64": {
        "about": "64-bit Windows on Intel/AMD",
        "tags": ["win_amd64"],
        "markers": {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt",
                    "platform_machine": "AMD64"},
    },
}
# PyPI's torch for Linux is the CUDA build (several GB with its nvidia-* packages); PyTorch's own CPU index
# has the same version as `torch==X+cpu`, which the `torch==X` pin accepts. macOS and Windows wheels on PyPI
# are CPU builds already.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
MANIFEST = "manifest.json"
NETWORK_ERRORS = ("NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
                  "Name or service not known", "nodename nor servname", "getaddrinfo failed", "ConnectTimeout",
                  "Read timed out", "ProxyError", "Network is unreachable", "No route to host", "SSLError",
                  "Connection refused", "ConnectionResetError", "Max retries exceeded")


def this_platform() -> str | None:
    """This machine's name in PLATFORMS (None where the course has no wheelhouse for it)."""
    machine = platform.machine().lower()
    if sys.platform.startswith("linux"):
        return {"x86_64": "linux-x86_64", "amd64": "linux-x86_64", "aarch64": "linux-aarch64",
                "arm64": "linux-aarch64"}.get(machine)
    if sys.platform == "darwin":
        return "macos-arm64" if machine == "arm64" else None
    if sys.platform == "win32":
        return "windows-x86_64" if machine in {"amd64", "x86_64"} else None
    return None


def this_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def take_wheelhouse(rest: list[str], environ: dict[str, str] | None = None) -> tuple[Path | None, list[str]]:
    """Take `--from DIR` (or `--from=DIR`) out of ``rest``; else DIFFUSION_LAB_WHEELHOUSE; else None."""
    environ = os.environ if environ is None else environ
    found, left = None, []
    args = iter(rest)
    for arg in args:
        if arg == "--from":
            found = next(args, None)
            if not found:
                sys.exit("[course] --from needs the wheelhouse folder: python3 course.py lab --from DIR")
        elif arg.startswith("--from="):
            found = arg.split("=", 1)[1]
        else:
            left.append(arg)
    found = found or environ.get(WHEELHOUSE_ENV) or None
    return (Path(found).expanduser().resolve() if found else None), left


def pinned_requirements(extras: list[str], pyproject: Path | None = None) -> list[str]:
    """The course's pins (its dependencies and ``extras``), what building it needs, and pip itself."""
    import tomllib  # here, not at the top: Python older than 3.11 gets the version message first

    data = tomllib.loads((pyproject or ROOT / "pyproject.toml").read_text())
    reqs = list(data["project"]["dependencies"])
    for extra in extras:
        reqs += data["project"]["optional-dependencies"][extra]
    reqs += data.get("build-system", {}).get("requires", []) + ["pip"]
    return list(dict.fromkeys(reqs))


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _wheel_parts(filename: str) -> tuple[str, list[str], list[str], list[str]] | None:
    """(name, python tags, abi tags, platform tags) of a wheel's file name."""
    parts = filename[: -len(".whl")].split("-") if filename.endswith(".whl") else []
    if len(parts) not in (5, 6):
        return None
    return _norm(parts[0]), parts[-3].split("."), parts[-2].split("."), parts[-1].split(".")


def wheel_fits(filename: str, target: str, python: str) -> bool:
    """Would pip install this wheel on ``target`` with Python ``python``? (CPython; as pip's tags say.)"""
    parts = _wheel_parts(filename)
    if parts is None:
        return False
    _, pys, abis, plats = parts
    major, minor = (int(x) for x in python.split("."))
    cp = f"cp{major}{minor}"
    abi3 = any(re.fullmatch(r"cp3(\d+)", p) and int(p[3:]) <= minor for p in pys)
    if not (set(pys) & {"py3", f"py{major}{minor}", cp} or ("abi3" in abis and abi3)):
        return False
    if not set(abis) & {"none", cp, "abi3"}:
        return False
    if "any" in plats:
        return True
    arch = {"linux-x86_64": "x86_64", "linux-aarch64": "aarch64"}.get(target)
    for plat in plats:
        if arch and (m := re.fullmatch(rf"manylinux(?:_2_(\d+)|(1|2010|2014))_{arch}", plat)):
            glibc = int(m[1]) if m[1] else {"1": 5, "2010": 12, "2014": 17}[m[2]]
            if glibc <= 28:
                return True
        if target == "macos-arm64" and (m := re.fullmatch(r"macosx_(\d+)_(\d+)_(arm64|universal2)", plat)):
            if (int(m[1]), int(m[2])) <= (12, 0):
                return True
        if target == "windows-x86_64" and plat == "win_amd64":
            return True
    return False


def _version(text: str) -> tuple[int, ...] | None:
    return tuple(int(x) for x in text.split(".")) if re.fullmatch(r"\d+(\.\d+)*", text) else None


def marker_holds(marker: str, env: dict[str, str]) -> bool:
    """Evaluate a PEP 508 environment marker for ``env`` (names missing from it read as "")."""
    tree = ast.parse(marker.replace("===", "==").replace("~=", ">=").strip(), mode="eval")

    def value(node: ast.AST) -> str:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return env.get(node.id, "")
        raise ValueError(f"not a marker: {marker!r}")

    def compare(op: ast.cmpop, left: str, right: str) -> bool:
        if isinstance(op, ast.In):
            return left in right
        if isinstance(op, ast.NotIn):
            return left not in right
        a, b = _version(left), _version(right)
        if a is not None and b is not None:
            width = max(len(a), len(b))
            left, right = a + (0,) * (width - len(a)), b + (0,) * (width - len(b))  # type: ignore[assignment]
        ops = {ast.Eq: lambda x, y: x == y, ast.NotEq: lambda x, y: x != y, ast.Lt: lambda x, y: x < y,
               ast.LtE: lambda x, y: x <= y, ast.Gt: lambda x, y: x > y, ast.GtE: lambda x, y: x >= y}
        return ops[type(op)](left, right)

    def holds(node: ast.AST) -> bool:
        if isinstance(node, ast.BoolOp):
            results = [holds(v) for v in node.values]
            return all(results) if isinstance(node.op, ast.And) else any(results)
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            return compare(node.ops[0], value(node.left), value(node.comparators[0]))
        raise ValueError(f"not a marker: {marker!r}")

    return holds(tree.body)


def marker_env(target: str, python: str) -> dict[str, str]:
    return {**PLATFORMS[target]["markers"], "python_version": python, "python_full_version": f"{python}.0",
            "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}


def wheel_requirements(path: Path) -> list[str]:
    """The Requires-Dist lines of a wheel's METADATA."""
    with zipfile.ZipFile(path) as zf:
        name = next(n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
        headers = HeaderParser().parsestr(zf.read(name).decode("utf-8", "replace"))
    return headers.get_all("Requires-Dist") or []


def missed_by_markers(folder: Path, target: str, python: str) -> list[str]:
    """Requirements of the wheels for ``target`` that hold there but have no wheel in ``folder``: pip judged
    their markers by this machine (e.g. `pywinpty; os_name == "nt"`, seen from Linux for Windows)."""
    env = marker_env(target, python)
    fitting = [w for w in sorted(folder.glob("*.whl")) if wheel_fits(w.name, target, python)]
    have = {_wheel_parts(w.name)[0] for w in fitting}
    missed: dict[str, str] = {}
    for wheel in fitting:
        for line in wheel_requirements(wheel):
            req, _, marker = line.partition(";")
            name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
            if not marker.strip() or not name or _norm(name[1]) in have:
                continue
            try:
                if marker_holds(marker, env):
                    missed.setdefault(_norm(name[1]), req.strip())
            except (SyntaxError, ValueError, KeyError):
                continue  # a marker this reader does not understand: the offline install names what is missing
    return list(missed.values())


def _pip_for_downloads() -> list[str]:
    """A pip to download with: this Python's, else the course's venv's, else a throwaway venv's."""
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    if venv_python().exists():
        return [str(venv_python()), "-m", "pip"]
    scratch = Path(tempfile.mkdtemp(prefix="diffusion-lab-pip-"))
    if subprocess.run([sys.executable, "-m", "venv", str(scratch)], capture_output=True).returncode != 0:
        sys.exit("[course] this Python has no pip and cannot make a virtual environment: install pip "
                 "(on Debian/Ubuntu: apt-get install python3-pip python3-venv) and run again")
    return [str(scratch / ("Scripts/python.exe" if os.name == "nt" else "bin/python")), "-m", "pip"]


def download_command(pip: list[str], folder: Path, requirements: list[str], target: str, python: str,
                     torch_index: str | None) -> list[str]:
    """pip download of ``requirements`` as wheels only, for ``target`` and ``python``. The target's tags are
    given even for this machine's own platform: its own tags may be newer (a wheel for glibc 2.34, say) than
    the learners' machines."""
    cmd = [*pip, "download", "--dest", str(folder), "--only-binary=:all:", "--progress-bar", "off",
           "--implementation", "cp", "--python-version", python, "--abi", f"cp{python.replace('.', '')}"]
    for tag in PLATFORMS[target]["tags"]:
        cmd += ["--platform", tag]
    if torch_index:
        cmd += ["--extra-index-url", torch_index]
    return cmd + requirements


def _pip_streamed(cmd: list[str]) -> tuple[int, str]:
    """Run pip, showing its lines as they come, and keep them for the error message."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines = []
    for line in proc.stdout:  # type: ignore[union-attr]
        lines.append(line)
        print(f"  {line}", end="", flush=True)
    return proc.wait(), "".join(lines)


def _download_failed(output: str, folder: Path, target: str, python: str) -> str:
    if any(err in output for err in NETWORK_ERRORS):
        return ("could not reach the package index (no network, or a proxy or firewall in the way). Connect this "
                "machine to the internet (behind a proxy: set HTTPS_PROXY; with a mirror: PIP_INDEX_URL) and run "
                f"the same command again; the wheels already in {folder} are kept and not fetched twice")
    missing = re.findall(r"No matching distribution found for ([^\s;]+)", output)
    if missing:
        seen = re.search(rf"requirement {re.escape(missing[-1])} \(from versions: ([^)]*)\)", output)
        return (f"the index has no wheel of {missing[-1]} for {target} with Python {python} (versions it offered "
                f"there: {seen[1] if seen else 'none'}). A Python version that this release does not support? "
                f"Try another --python, or make the wheelhouse on a {target} machine itself. (No versions at all "
                "can also mean an index that did not answer: check the network and PIP_INDEX_URL)")
    return "pip download failed (its output is above)"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path, target: str, python: str, extras: list[str], requirements: list[str]) -> dict:
    """manifest.json (what the folder is for, each wheel's SHA-256) and README.md, kept across runs."""
    path = folder / MANIFEST
    old = json.loads(path.read_text()) if path.exists() else {}
    targets = [t for t in old.get("targets", []) if (t["platform"], t["python"]) != (target, python)]
    targets.append({"platform": target, "python": python, "extras": extras, "requirements": requirements,
                    "made": datetime.date.today().isoformat()})
    wheels = {w.name: {"sha256": _sha256(w), "bytes": w.stat().st_size} for w in sorted(folder.glob("*.whl"))}
    manifest = {"made_by": "python3 course.py wheelhouse", "targets": targets, "wheels": wheels}
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    mb = sum(w["bytes"] for w in wheels.values()) / 1e6
    made_for = "\n".join(f"- {t['platform']}, Python {t['python']}, [{','.join(t['extras'])}], made {t['made']}: "
                         f"{PLATFORMS[t['platform']]['about']}" for t in targets)
    (folder / "README.md").write_text(f"""# diffusion-lab wheelhouse

Every wheel that `python3 course.py lab` installs, downloaded once by `python3 course.py wheelhouse`, for:

{made_for}

{len(wheels)} wheels, {mb:,.0f} MB in all. `{MANIFEST}` lists each with its SHA-256, which the install checks
first, so a damaged copy is found before pip runs.

Install with no network, from the course's folder (a copy of it on your disk, not on the stick):

    python3 course.py lab --from /path/to/this/folder
    # or: DIFFUSION_LAB_WHEELHOUSE=/path/to/this/folder python3 course.py lab
    # Windows: py course.py lab --from E:\\this-folder

pip then looks nowhere else (`--no-index --find-links`). Your Python must be one of the versions above,
on one of the platforms above; otherwise the install stops and names the first wheel it lacks.
""")
    return manifest


def make_wheelhouse(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 course.py wheelhouse",
                                     description="Download every pinned wheel the course needs, once, into DIR.")
    parser.add_argument("folder", metavar="DIR")
    parser.add_argument("--platform", default=this_platform(),
                        help=f"one of {', '.join(PLATFORMS)} (default: this machine, {this_platform()})")
    parser.add_argument("--python", default=this_python(), help=f"X.Y (default: this one, {this_python()})")
    parser.add_argument("--dev", action="store_true", help="add the test tools (for `course.py test --from DIR`)")
    parser.add_argument("--torch-index", default="auto",
                        help=f"an extra index for torch's CPU build; default on Linux {TORCH_CPU_INDEX}; "
                             "'none' for the index alone (on Linux PyPI's torch is the CUDA build, several GB)")
    args = parser.parse_args(argv)
    if args.platform not in PLATFORMS:
        what = f"unknown platform {args.platform!r}" if args.platform else "this machine is none of the platforms"
        sys.exit(f"[course] {what}: choose one with --platform: {', '.join(PLATFORMS)}")
    if not re.fullmatch(r"3\.\d{1,2}", args.python):
        sys.exit(f"[course] --python wants a version like 3.11, not {args.python!r}")
    folder = Path(args.folder).expanduser().resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as err:
        sys.exit(f"[course] cannot write to {folder}: {err.strerror or err}. Choose a folder you can write to")
    torch_index = {"auto": TORCH_CPU_INDEX if args.platform.startswith("linux") else None, "none": None}.get(
        args.torch_index, args.torch_index)
    extras = ["lab", "dev", "bench"] if args.dev else ["lab"]
    requirements = pinned_requirements(extras)
    pip = _pip_for_downloads()
    say(f"downloading the wheels for {args.platform} ({PLATFORMS[args.platform]['about']}), Python {args.python}, "
        f"[{','.join(extras)}] into {folder}; pip checks each file against the index's SHA-256")
    todo, fetched = requirements, []
    elsewhere = (args.platform, args.python) != (this_platform(), this_python())
    for _ in range(5):  # then what pip skipped by judging markers on this machine, and what that needs
        code, output = _pip_streamed(download_command(pip, folder, todo, args.platform, args.python, torch_index))
        if code != 0:
            sys.exit(f"[course] {_download_failed(output, folder, args.platform, args.python)}")
        todo = missed_by_markers(folder, args.platform, args.python) if elsewhere else []
        if not todo:
            break
        say(f"also needed on {args.platform}, which pip judged by this machine: {', '.join(todo)}")
        fetched += todo
    manifest = write_manifest(folder, args.platform, args.python, extras, requirements + fetched)
    fits = [n for n in manifest["wheels"] if wheel_fits(n, args.platform, args.python)]
    mb = sum(manifest["wheels"][n]["bytes"] for n in fits) / 1e6
    say(f"done: {len(fits)} wheels for {args.platform}, Python {args.python} ({mb:,.0f} MB) in {folder}, with "
        f"{MANIFEST} and README.md. Install with: python3 course.py lab --from {folder}")
    return 0


def check_wheelhouse(folder: Path) -> None:
    """Stop early, and clearly, when ``folder`` is no wheelhouse or a wheel in it is damaged."""
    if not folder.is_dir():
        sys.exit(f"[course] no wheelhouse at {folder}: make one with `python3 course.py wheelhouse {folder}` "
                 "(or check the path, e.g. where the USB stick is mounted)")
    if not any(folder.glob("*.whl")):
        sys.exit(f"[course] {folder} holds no wheels: make them with `python3 course.py wheelhouse {folder}`")
    manifest = folder / MANIFEST
    here = this_platform()
    if manifest.exists():
        for name, info in json.loads(manifest.read_text()).get("wheels", {}).items():
            if here and not wheel_fits(name, here, this_python()):
                continue  # another platform's: not read, so a stick with several stays quick
            if (folder / name).exists() and _sha256(folder / name) != info["sha256"]:
                sys.exit(f"[course] {folder / name} is damaged (its SHA-256 is not the one in {MANIFEST}): "
                         "copy the wheelhouse again")


def offline_pip_env() -> dict[str, str]:
    """No pip configuration file or PIP_* variable may add an index or a find-links folder."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def pip_offline(py: Path, folder: Path, args: list[str]) -> None:
    """pip install from ``folder`` alone; a missing wheel is named, with what to do about it."""
    cmd = [str(py), "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(folder), *args]
    result = subprocess.run(cmd, cwd=ROOT, env=offline_pip_env(), capture_output=True, text=True)
    if result.returncode == 0:
        return
    sys.stderr.write(result.stdout + result.stderr)
    missing = re.findall(r"No matching distribution found for ([^\s;]+)", result.stdout + result.stderr)
    if not missing:
        sys.exit(f"[course] installing from the wheelhouse failed (exit {result.returncode}): {' '.join(cmd)}")
    made_for = ""
    if (folder / MANIFEST).exists():
        targets = json.loads((folder / MANIFEST).read_text()).get("targets", [])
        made_for = "; it was made for " + ", ".join(f"{t['platform']} with Python {t['python']} "
                                                    f"[{','.join(t['extras'])}]" for t in targets)
    sys.exit(f"[course] the wheelhouse {folder} has no wheel of {missing[-1]} for this machine "
             f"({this_platform() or sys.platform + ' ' + platform.machine()}, Python {this_python()}){made_for}. "
             f"Make one that has it where there is network: python3 course.py wheelhouse DIR --platform "
             f"{this_platform() or 'P'} --python {this_python()} (add --dev for `setup --dev` or `test`); "
             "or install without --from where there is network")


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


def voila_command(python: Path | str, rest: list[str]) -> list[str]:
    """Voila serving apps/imagine.ipynb: the page shows the notebook's text and the /imagine widget, never its
    code. Voila opens a browser and listens on localhost:8866 unless ``rest`` says otherwise."""
    return [str(python), "-m", "voila", _shown(IMAGINE_APP), "--strip_sources=True", *rest]


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "wheelhouse":
        return make_wheelhouse(rest)
    wheelhouse, rest = take_wheelhouse(rest) if command in {"setup", "lab", "test", "imagine"} else (None, rest)
    if command == "setup":
        ensure_venv("dev,bench" if "--dev" in rest else "lab", wheelhouse)
        say("done; start the course with: python3 course.py lab")
        return 0
    if command == "lab":
        py = ensure_venv("lab", wheelhouse)
        prepare_workspace(py)
        cmd = jupyter_command(py, rest, as_root=hasattr(os, "geteuid") and os.geteuid() == 0)
        say("opening JupyterLab; stop it with Ctrl-C")
        return subprocess.call(cmd, cwd=ROOT)
    if command == "imagine":
        py = ensure_venv("lab", wheelhouse)
        say("opening /imagine as a web page (Voila: the widget without the notebook's code); stop it with Ctrl-C")
        return subprocess.call(voila_command(py, rest), cwd=ROOT)
    if command == "test":
        py = ensure_venv("dev,bench", wheelhouse)
        ensure_chromium()
        return subprocess.call([str(py), "-m", "pytest", *rest], cwd=ROOT)
    print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
