"""Fixtures for the browser tests: a throw-away JupyterLab server and Debian's Chromium via Playwright.

Nothing here downloads anything: the browser is the system Chromium (``apt-get install chromium``),
driven through Playwright's ``executable_path``. The tests run against a copy of ``chapters/`` in
a temporary folder, so the committed notebooks are never touched.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from servers import REPO, die_with_parent, free_port

CHAPTERS = REPO / "chapters"
REQUIRE_ENV = "DIFFUSION_LAB_REQUIRE_BROWSER"
ARTIFACTS_ENV = "DIFFUSION_LAB_ARTIFACTS"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
SERVER_START_TIMEOUT_S = 120

# JupyterLab user settings that keep the UI quiet and deterministic: no news prompt or update
# check (the machine may be offline), no toasts over the notebook, and every cell attached to the
# DOM (the default windowing only renders the cells in view, which would hide outputs from us).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
        "doNotDisturbMode": True,
    },
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def find_chromium() -> str | None:
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = find_chromium()
    if path is None:
        how = "install Debian's Chromium with `apt-get install chromium` (playwright's own browser download is not used)"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but no Chromium at /usr/bin/chromium or on PATH: {how}", pytrace=False)
        pytest.skip(f"no Chromium at /usr/bin/chromium or on PATH; {how} (set {REQUIRE_ENV}=1 to fail instead)")
    return path


@pytest.fixture(scope="session")
def artifacts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: $DIFFUSION_LAB_ARTIFACTS if set, else a pytest temporary folder."""
    env = os.environ.get(ARTIFACTS_ENV)
    path = Path(env) if env else tmp_path_factory.mktemp("browser-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class LabServer:
    root: Path
    port: int
    token: str
    proc: subprocess.Popen
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base_url}/{path.lstrip('/')}{sep}token={self.token}"

    def api(self, path: str, method: str = "GET", timeout: float = 10) -> object:
        req = urllib.request.Request(self.url(f"api/{path}"), method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def log_tail(self, n_chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n_chars:]
        except OSError:
            return "(no server log)"


def _stop_server(server: LabServer) -> None:
    """Shut the kernels and the server down; escalate to signals for anything left behind."""
    import psutil  # a dependency of ipykernel

    try:
        family = [psutil.Process(server.proc.pid), *psutil.Process(server.proc.pid).children(recursive=True)]
    except psutil.Error:
        family = []
    if server.proc.poll() is None:
        try:
            server.api("shutdown", method="POST", timeout=10)  # stops every kernel, then the server
        except (OSError, urllib.error.URLError, ValueError):
            pass
        try:
            server.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.proc.send_signal(signal.SIGTERM)
            try:
                server.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.proc.kill()
                server.proc.wait(timeout=10)
    # Kernels run in their own sessions, so kill any survivor individually, by pid.
    for p in family:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                p.kill()
        except psutil.Error:
            pass


@pytest.fixture(scope="session")
def lab_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch copy of chapters/ that the server serves (tests may add notebooks to it)."""
    root = tmp_path_factory.mktemp("lab") / "chapters"
    if CHAPTERS.is_dir():
        shutil.copytree(CHAPTERS, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    else:
        root.mkdir()
    return root


@pytest.fixture(scope="session")
def lab_server(chromium_path: str, lab_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """JupyterLab on 127.0.0.1 (free port, random token) serving ``lab_root``, in quick mode."""
    home = tmp_path_factory.mktemp("jupyter-home")
    config_dir, runtime_dir = home / "config", home / "runtime"
    settings_dir, workspaces_dir = home / "user-settings", home / "workspaces"
    for d in (config_dir, runtime_dir, workspaces_dir):
        d.mkdir()
    for rel, values in LAB_SETTINGS.items():
        f = settings_dir / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(values))

    port, token = free_port(), secrets.token_hex(24)
    env = dict(os.environ)
    env.update(
        DIFFUSION_LAB_QUICK="1",
        # Only config and runtime are isolated: the kernelspec and the ipywidgets lab extension
        # live under sys.prefix/share/jupyter, which stays on the data path.
        JUPYTER_CONFIG_DIR=str(config_dir),
        JUPYTER_RUNTIME_DIR=str(runtime_dir),
        IPYTHONDIR=str(home / "ipython"),
        PYTHONUNBUFFERED="1",
    )
    cmd = [
        sys.executable, "-m", "jupyter", "lab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={lab_root}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp, used to run commands
        f"--LabApp.user_settings_dir={settings_dir}",
        f"--LabApp.workspaces_dir={workspaces_dir}",
        "--LabApp.extension_manager=readonly",  # no PyPI queries
        "--ServerApp.terminals_enabled=False",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers often run as root
        cmd.append("--allow-root")
    log_path = home / "server.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, cwd=lab_root, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent)
    server = LabServer(root=lab_root, port=port, token=token, proc=proc, log_path=log_path)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with code {proc.returncode}:\n{server.log_tail()}", pytrace=False)
            try:
                server.api("status", timeout=2)
                break
            except (OSError, urllib.error.URLError, ValueError):
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer /api/status within {SERVER_START_TIMEOUT_S}s:\n"
                                f"{server.log_tail()}", pytrace=False)
                time.sleep(0.25)
        yield server
    finally:
        _stop_server(server)
        log.close()


@pytest.fixture(scope="session")
def browser(chromium_path: str, tmp_path_factory: pytest.TempPathFactory):
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser, request: pytest.FixtureRequest, artifacts_dir: Path):
    """A fresh tab; on a failing test a full-page screenshot is saved next to the other artifacts."""
    pg = browser.new_page()
    console: list[str] = []
    pg.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    pg.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    pg.console_messages_seen = console
    yield pg
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        shot = artifacts_dir / f"{request.node.name}-failure.png"
        try:
            pg.screenshot(path=str(shot), full_page=True)
            print(f"\nfailure screenshot: {shot}")
        except Exception as exc:  # the page may be gone; the test's own error matters more
            print(f"\n(no failure screenshot: {exc})")
        if console:
            print("browser console:\n  " + "\n  ".join(console[-30:]))
    pg.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
