"""Checksums that prove a data file is the one the course was written against (chapter 02).

A SHA-256 digest is a 64-character fingerprint of a file's bytes: change one byte and it changes
completely. The bundled data ships with a ``SHA256SUMS`` file (the format ``sha256sum`` writes), and
loaders compare against it before trusting what they read.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

BUNDLED_FIX = "re-clone the repository or run `git checkout data/` to restore the original file"
_CHUNK = 1 << 20


class DataIntegrityError(Exception):
    """A data file exists but its bytes are not the expected ones (corrupted, truncated or edited)."""


def sha256_file(path: str | Path) -> str:
    """The SHA-256 digest of a file's bytes, as 64 lowercase hex characters."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: str | Path, expected: str, *, fix: str = BUNDLED_FIX) -> None:
    """Raise ``DataIntegrityError`` unless the file at ``path`` has SHA-256 ``expected``.

    ``fix`` is the advice put at the end of the message (how to get a good copy back).
    """
    actual = sha256_file(path)
    if actual != expected.strip().lower():
        raise DataIntegrityError(
            f"{path} is corrupted: its SHA-256 is {actual} but {expected} was expected. To fix it, {fix}."
        )


def read_sha256sums(path: str | Path) -> dict[str, str]:
    """Parse a ``SHA256SUMS`` file (lines of ``<hex digest>  <file name>``) into {file name: digest}."""
    sums: dict[str, str] = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise DataIntegrityError(
                f"{path}, line {number}, is not '<sha256>  <file name>': {line!r}. To fix it, {BUNDLED_FIX}."
            )
        sums[parts[1].strip().lstrip("*")] = parts[0].lower()
    return sums
