"""Small helpers for the browser tests' servers (JupyterLab, Voila): where the repository is, a free port, and
a child process that dies with pytest."""

from __future__ import annotations

import signal
import socket
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def die_with_parent() -> None:
    """In the server's child process: get SIGTERM if pytest itself dies (killed, not just failing).

    jupyter_server shuts its kernels down on SIGTERM, so nothing outlives a killed test run.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
