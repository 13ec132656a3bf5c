"""Writing the course's files safely: checked before the work, atomic, and readable by others (chapters 04-05).

Training and sampling write checkpoints, weights and samples. Three things make that safe:

- ``check_writable`` looks at the target folder *before* any work, so a run does not train for an hour
  and then fail on a folder it cannot write to;
- ``atomic_write`` writes to a temporary file with a unique name in the target folder and renames it
  over the target, so a crash leaves the old file intact and two processes never share a temporary file;
- ``chmod_to_umask`` gives a file the mode the user's umask asks for (usually 0644): libraries that
  write through ``mkstemp`` (safetensors, ``tempfile``) leave 0600, which hides a shared course folder
  from everyone else.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def umask_mode() -> int:
    """The mode a new file gets from ``open()`` under the current umask, e.g. 0o644 for umask 022."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def chmod_to_umask(path: str | Path) -> None:
    """Give ``path`` the mode a file made by ``open()`` would have (0644 under the usual umask 022)."""
    os.chmod(path, umask_mode())


def check_writable(folder: str | Path, what: str) -> Path:
    """Raise a one-line ValueError unless files can be written in ``folder`` (created later if missing).

    what: how the user named the target, e.g. "--out runs/mnist", for the message. Nothing is written.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:  # the nearest folder that exists
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise ValueError(f"{what}: {existing} is a file, not a folder; choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{what}: cannot write in {existing} (it is read-only or not yours); "
                         f"choose a folder you can write to")
    return folder


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None], what: str | None = None) -> Path:
    """Write ``path`` through ``write(file)`` into a uniquely named temporary file beside it, then rename it over
    ``path``: readers see the old file or the new one, never half of one, and two writers never share a temporary
    file. The file gets the umask's mode. An OSError becomes a one-line ValueError naming ``what`` (default: path).
    """
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
                                         delete=False) as f:
            tmp = Path(f.name)
            write(f)
        chmod_to_umask(tmp)
        os.replace(tmp, path)
    except OSError as err:
        raise ValueError(f"cannot write {what or path}: {err.strerror or err}; choose a folder you can write "
                         f"to, with free space") from err
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()
    return path
