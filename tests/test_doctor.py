"""Tests for diffusion_lab.cli.doctor and ``python -m diffusion_lab doctor``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from diffusion_lab import config
from diffusion_lab.cli import doctor
from diffusion_lab.cli.doctor import Finding, report, run_checks

ROOT = Path(__file__).resolve().parents[1]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIFFUSION_LAB_")}
    return {**env, **extra}


def _doctor_cli(**extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "diffusion_lab", "doctor"], cwd=ROOT, env=_clean_env(**extra_env),
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(config.QUICK_ENV, raising=False)
    monkeypatch.delenv(config.DEVICE_ENV, raising=False)


def _line(text: str, name: str) -> str:
    """The report's status line for the finding called ``name``."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in {"ok", "BAD"} and parts[1] == name:
            return line
    raise AssertionError(f"no line for {name!r} in:\n{text}")


# ----- in process --------------------------------------------------------------------------------

def test_run_checks_returns_findings(clean_env: None) -> None:
    findings = run_checks()
    assert findings and all(isinstance(f, Finding) for f in findings)
    by_name = {f.name: f for f in findings}
    for name in ("python", "torch", "numpy", "device", "mode"):
        assert name in by_name, f"no {name} finding"
    assert by_name["python"].ok
    assert by_name["device"].ok and by_name["device"].detail.startswith(str(config.pick_device()))
    assert by_name["mode"].ok and by_name["mode"].detail.startswith("full")
    for f in findings:
        assert f.ok or f.fix, f"{f.name} is BAD but suggests no fix"


def test_check_mode_quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.QUICK_ENV, "1")
    finding = doctor.check_mode()
    assert finding.ok and finding.detail.startswith("quick")


def test_check_mode_garbage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.QUICK_ENV, "garbage")
    finding = doctor.check_mode()
    assert not finding.ok
    assert config.QUICK_ENV in finding.detail and "'garbage'" in finding.detail
    assert config.QUICK_ENV in finding.fix


def test_check_device_bad_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.DEVICE_ENV, "gpu")
    finding = doctor.check_device()
    assert not finding.ok
    assert "'gpu'" in finding.detail
    assert config.DEVICE_ENV in finding.fix


def test_report_all_ok() -> None:
    text = report([Finding("python", True, "3.11"), Finding("device", True, "cpu (2 threads)")])
    assert text.startswith("diffusion-lab doctor")
    assert "ok " in _line(text, "python") and "cpu (2 threads)" in _line(text, "device")
    assert "Everything the course needs is here." in text
    assert "problem" not in text


def test_report_lists_problems_and_fixes() -> None:
    findings = [Finding("python", True, "3.11"), Finding("mode", False, "not understood", "set it to 1"),
                Finding("photo", False, "missing")]
    text = report(findings)
    assert _line(text, "mode").lstrip().startswith("BAD")
    assert _line(text, "python").lstrip().startswith("ok")
    assert "2 problem(s):" in text
    assert "  - mode: not understood\n    fix: set it to 1" in text
    assert "  - photo: missing" in text
    assert "Everything the course needs" not in text


def test_report_aligns_names() -> None:
    text = report([Finding("a", True, "x"), Finding("longer name", True, "y")])
    assert _line(text, "a").index("x") == _line(text, "longer").index("y")


def test_crashing_check_becomes_a_failed_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    def check_boom() -> Finding:
        raise RuntimeError("kaboom")

    def check_fine() -> list[Finding]:
        return [Finding("fine", True, "yes")]

    monkeypatch.setattr(doctor, "CHECKS", [check_boom, check_fine])
    findings = run_checks()
    assert [f.name for f in findings] == ["boom", "fine"]
    assert not findings[0].ok
    assert findings[0].detail == "RuntimeError: kaboom"
    assert findings[1].ok
    assert "BAD" in _line(report(findings), "boom")


# ----- the command line --------------------------------------------------------------------------

def test_cli_doctor_ok() -> None:
    result = _doctor_cli()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "device" in result.stdout and "mode" in result.stdout
    assert _line(result.stdout, "device").lstrip().startswith("ok")
    assert _line(result.stdout, "mode").lstrip().startswith("ok")
    assert "Everything the course needs is here." in result.stdout


def test_cli_doctor_bad_quick_mode() -> None:
    result = _doctor_cli(**{config.QUICK_ENV: "garbage"})
    assert result.returncode == 1, result.stdout + result.stderr
    assert _line(result.stdout, "mode").lstrip().startswith("BAD")
    assert "- mode:" in result.stdout
    assert f"fix: set {config.QUICK_ENV}=1 or unset it" in result.stdout
    assert "Traceback" not in result.stderr


def test_cli_requires_a_command() -> None:
    result = subprocess.run([sys.executable, "-m", "diffusion_lab"], cwd=ROOT, env=_clean_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "doctor" in result.stderr and "student" in result.stderr


@pytest.mark.parametrize("marker", ["KAGGLE_KERNEL_RUN_TYPE", "COLAB_RELEASE_TAG"])
def test_on_a_hosted_service_the_doctor_judges_torch_by_the_supported_range_not_the_pins(
        monkeypatch: pytest.MonkeyPatch, marker: str) -> None:
    """The set-up cell keeps Colab's / Kaggle's own packages: the doctor must not call their versions wrong
    (nor ask for JupyterLab), but an unsupported torch there is still a problem."""
    from diffusion_lab.cli import torch_support

    monkeypatch.setenv(marker, "Interactive")
    service = config.hosted_service()
    assert service == ("Kaggle" if marker.startswith("KAGGLE") else "Colab")
    monkeypatch.setattr(torch_support, "installed_torch_version", lambda: "2.99.1+cu124")
    [torch_line] = doctor.check_packages()
    assert torch_line.ok and f"{service}'s own" in torch_line.detail
    assert [f.ok for f in doctor.check_notebook_tools()] == [True]
    monkeypatch.setattr(torch_support, "installed_torch_version", lambda: "2.1.0")
    [torch_line] = doctor.check_packages()
    assert not torch_line.ok and "2.1.0" in torch_line.detail and service in torch_line.fix


def test_the_doctor_and_the_set_up_cell_look_for_the_same_service_markers(monkeypatch: pytest.MonkeyPatch) -> None:
    from tools.cloud_cell import cell_source

    cell = cell_source("https://example.org/course", ["numpy"])
    for marker in ("google.colab", "COLAB_RELEASE_TAG", "KAGGLE_KERNEL_RUN_TYPE"):
        assert marker in cell
    for marker in ("COLAB_RELEASE_TAG", "KAGGLE_KERNEL_RUN_TYPE"):
        monkeypatch.delenv(marker, raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert config.hosted_service() is None
