"""``python -m diffusion_lab doctor``: is this machine ready for the course? (chapter 00)

Prints versions, the compute device, the mode, and the course's data, and says what is wrong
and how to fix it. Each check is a small function returning a ``Finding``; ``run_checks`` runs them all.
"""

from __future__ import annotations

import importlib.metadata as md
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from diffusion_lab import config

PACKAGE = "diffusion_lab"


@dataclass(frozen=True)
class Finding:
    """One line of the report: what was checked, what was found, and a fix when something is wrong."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


def _pins() -> dict[str, str]:
    """The versions pyproject.toml pins for a learner (core and [lab]), from the installed metadata."""
    try:
        requires = md.requires(PACKAGE) or []
    except md.PackageNotFoundError:
        return {}
    pins = {}
    for req in requires:
        spec, _, marker = req.partition(";")
        if "extra" in marker and "lab" not in marker:
            continue  # test and benchmark tools are not the learner's concern
        if "==" in spec:
            name, version = spec.strip().split("==", 1)
            pins[name.strip().lower()] = version.strip()
    return pins


def check_python() -> Finding:
    ok = sys.version_info >= (3, 11)
    return Finding("python", ok, f"{platform.python_version()} at {sys.executable}",
                   "" if ok else "the course needs Python 3.11 or newer")


def check_packages() -> list[Finding]:
    service = config.hosted_service()
    if service is not None:  # the set-up cell keeps the service's own versions: only torch's range matters
        from diffusion_lab.cli.torch_support import SUPPORTED_TORCH, installed_torch_version, is_supported

        version = installed_torch_version()
        ok = version is not None and is_supported(version)
        return [Finding("torch", ok, f"{version}, {service}'s own (the course supports {SUPPORTED_TORCH})",
                        "" if ok else f"use a {service} runtime whose torch is {SUPPORTED_TORCH}")]
    findings = []
    for name, pinned in sorted(_pins().items()):
        try:
            installed = md.version(name)
        except md.PackageNotFoundError:
            if name in {"torch", "numpy", "matplotlib", "ipywidgets", "tqdm", "nbformat"}:
                findings.append(Finding(name, False, "not installed", "run `python3 course.py lab` to set up"))
            continue
        base = installed.split("+")[0]
        ok = base == pinned
        findings.append(Finding(name, ok, installed + ("" if ok else f" (the course pins {pinned})"),
                                "" if ok else "run `python3 course.py lab` to reinstall the pinned versions"))
    return findings


def check_device() -> Finding:
    try:
        device = config.pick_device()
    except ValueError as err:
        return Finding("device", False, str(err), f"unset {config.DEVICE_ENV} or set it to cpu")
    detail = str(device)
    if device.type == "cuda":
        detail += f" ({torch.cuda.get_device_name(device)})"
    elif device.type == "cpu":
        detail += f" ({torch.get_num_threads()} threads; chapters are sized for this)"
    return Finding("device", True, detail)


def check_mode() -> Finding:
    try:
        mode = config.mode_name()
    except ValueError as err:
        return Finding("mode", False, str(err), f"set {config.QUICK_ENV}=1 or unset it")
    return Finding("mode", True, f"{mode} ({config.QUICK_ENV}={'1' if mode == 'quick' else 'unset/0'})")


def check_data() -> list[Finding]:
    findings = []
    try:
        from diffusion_lab.data import load_mnist, load_photo
        from diffusion_lab.data.paths import data_dir
    except ImportError as err:  # pragma: no cover - a broken install
        return [Finding("data", False, f"cannot import the data module: {err}", "reinstall the course")]
    findings.append(Finding("data folder", Path(data_dir()).is_dir(), str(data_dir()),
                            "re-clone the repository or set DIFFUSION_LAB_DATA to its data/ folder"))
    try:
        images, _ = load_mnist("train")
        findings.append(Finding("MNIST subset", True, f"{len(images)} training images, checksum verified"))
    except (OSError, ValueError) as err:
        findings.append(Finding("MNIST subset", False, str(err).splitlines()[0], "run `git checkout data/`"))
    try:
        photo = load_photo(64)
        findings.append(Finding("photo", True, f"grace_hopper.jpg from matplotlib, {tuple(photo.shape)}"))
    except (OSError, ValueError) as err:
        findings.append(Finding("photo", False, str(err), "reinstall matplotlib"))
    return findings


def check_notebook_tools() -> list[Finding]:
    service = config.hosted_service()
    if service is not None:
        return [Finding("notebook", True, f"{service}'s own front end")]
    findings = []
    for name, why in [("jupyterlab", "to open the chapters"), ("jupytext", "to pair .ipynb and .py"),
                      ("jupyterlab_widgets", "for sliders in JupyterLab")]:
        try:
            findings.append(Finding(name, True, md.version(name)))
        except md.PackageNotFoundError:
            findings.append(Finding(name, False, f"not installed ({why})", "run `python3 course.py lab`"))
    return findings


CHECKS: list[Callable[[], Finding | list[Finding]]] = [
    check_python, check_packages, check_device, check_mode, check_data, check_notebook_tools,
]


def run_checks() -> list[Finding]:
    """Run every check; a check that crashes becomes a failed finding rather than a traceback."""
    findings: list[Finding] = []
    for check in CHECKS:
        try:
            result = check()
        except Exception as err:  # noqa: BLE001 - the doctor reports, it does not crash
            result = Finding(check.__name__.removeprefix("check_"), False, f"{type(err).__name__}: {err}")
        findings.extend(result if isinstance(result, list) else [result])
    return findings


def report(findings: list[Finding]) -> str:
    """The findings as aligned text, problems and their fixes at the end."""
    width = max(len(f.name) for f in findings)
    lines = [f"diffusion-lab doctor (diffusion_lab {md.version(PACKAGE) if _pins() else 'not installed'})"]
    lines += [f"  {'ok ' if f.ok else 'BAD'}  {f.name:<{width}}  {f.detail}" for f in findings]
    problems = [f for f in findings if not f.ok]
    if problems:
        lines.append(f"\n{len(problems)} problem(s):")
        lines += [f"  - {f.name}: {f.detail}" + (f"\n    fix: {f.fix}" if f.fix else "") for f in problems]
    else:
        lines.append("\nEverything the course needs is here.")
    return "\n".join(lines)
