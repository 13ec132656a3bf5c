"""Where the course's data lives on disk (used from chapter 02 on, wherever data is loaded).

Two folders matter:

- ``data_dir()``: the repository's bundled ``data/`` folder (the MNIST subset, checkpoints). It is
  found next to the package, or wherever the environment variable ``DIFFUSION_LAB_DATA`` points.
- ``cache_dir()``: where optional downloads go, ``~/.cache/diffusion_lab`` by default, or wherever
  ``DIFFUSION_LAB_CACHE`` points.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "DIFFUSION_LAB_DATA"
CACHE_ENV = "DIFFUSION_LAB_CACHE"


def data_dir() -> Path:
    """The folder holding the bundled data: ``$DIFFUSION_LAB_DATA`` if set, else ``<repo>/data``.

    The default is found relative to this file (``diffusion_lab/data/paths.py`` -> repo root), so it
    works from any working directory as long as the package is used from a clone of the repository.
    """
    override = os.environ.get(DATA_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    return Path(__file__).resolve().parents[2] / "data"


def cache_dir() -> Path:
    """The folder for downloaded datasets: ``$DIFFUSION_LAB_CACHE`` if set, else ``~/.cache/diffusion_lab``."""
    override = os.environ.get(CACHE_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "diffusion_lab"
