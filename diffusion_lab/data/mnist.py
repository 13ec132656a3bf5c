"""The MNIST subset bundled with the course: 20,000 training and 2,000 test digits (chapters 02-05).

The subset lives in ``data/mnist/mnist_subset.npz`` (made by ``tools/make_mnist_subset.py``; see
``data/mnist/README.md`` for provenance and the CC BY-SA 3.0 licence). Rows are interleaved by class
(0, 1, ..., 9, 0, 1, ...), so the first ``10 * k`` rows hold exactly ``k`` of every digit. Every load
checks the file's SHA-256 against ``data/mnist/SHA256SUMS`` (once per file version), so a damaged
clone fails loudly instead of training on garbage.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from diffusion_lab.data._validate import check_choice, check_int
from diffusion_lab.data.download import download_dataset, load_idx_dataset
from diffusion_lab.data.integrity import DataIntegrityError, read_sha256sums, verify_sha256
from diffusion_lab.data.paths import DATA_ENV, data_dir

NPZ_NAME = "mnist_subset.npz"
SPLITS = ("train", "test")
_verified: set[tuple[str, int, int, str]] = set()  # (path, mtime_ns, size, digest) already checked


def _mnist_root(root: str | Path | None) -> Path:
    return data_dir() / "mnist" if root is None else Path(root).expanduser()


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found. The MNIST subset ships with the repository in data/mnist/: run "
            f"`git checkout data/` (or re-clone), or set {DATA_ENV} to the folder that holds mnist/, "
            f"or pass root= the folder holding {NPZ_NAME} and SHA256SUMS."
        )


def _verify_once(npz_path: Path, sums_path: Path) -> None:
    """Check ``npz_path`` against ``sums_path``, skipping the work if this file version passed before."""
    expected = read_sha256sums(sums_path).get(NPZ_NAME)
    if expected is None:
        raise DataIntegrityError(
            f"{sums_path} has no line for {NPZ_NAME}. To fix it, re-clone the repository or run `git checkout data/`."
        )
    stat = npz_path.stat()
    key = (str(npz_path.resolve()), stat.st_mtime_ns, stat.st_size, expected)
    if key not in _verified:
        verify_sha256(npz_path, expected)
        _verified.add(key)


def load_mnist(split: str = "train", *, root: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one split of the bundled subset after checking its SHA-256.

    Returns ``(images, labels)``: uint8 (N, 28, 28) with 0 = background and 255 = ink, and int64 (N,)
    digits. N is 20,000 for ``"train"`` and 2,000 for ``"test"``. ``root`` is the folder holding
    ``mnist_subset.npz`` and ``SHA256SUMS`` (default: ``data_dir() / "mnist"``).

    Raises ``FileNotFoundError`` if the files are missing and ``DataIntegrityError`` if they changed.
    """
    check_choice("split", split, SPLITS)
    folder = _mnist_root(root)
    npz_path, sums_path = folder / NPZ_NAME, folder / "SHA256SUMS"
    _require_file(npz_path)
    _require_file(sums_path)
    _verify_once(npz_path, sums_path)
    with np.load(npz_path, allow_pickle=False) as arrays:
        images = torch.from_numpy(arrays[f"{split}_images"])  # (N, 28, 28) uint8
        labels = torch.from_numpy(arrays[f"{split}_labels"].astype(np.int64))  # (N,)
    return images, labels


def mnist_tensors(
    split: str = "train", n: int | None = None, *, root: str | Path | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The subset ready for a diffusion model: pixels scaled from [0, 255] to [-1, 1].

    Returns ``(x0, labels)``: float32 (N, 1, 28, 28) and int64 (N,). ``n`` keeps the first ``n`` rows,
    which are class-balanced when ``n`` is a multiple of 10 (the file interleaves the digits).
    """
    images, labels = load_mnist(split, root=root)
    if n is not None:
        check_int("n", n, low=1, high=len(labels))
        images, labels = images[:n], labels[:n]
    return _to_model_range(images), labels


def full_mnist_tensors(split: str = "train", *, root: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """All of MNIST, 60,000 training or 10,000 test digits, scaled as ``mnist_tensors`` scales the subset.

    Downloads the original files once into ``root`` (default ``cache_dir() / "mnist"``), checked against
    their digests (``download.py``); offline, the ``DownloadError`` says so. Returns float32 (N, 1, 28, 28)
    in [-1, 1] and int64 (N,). For training runs that want every digit (chapter 09's ``mnist_full``
    recipes); the chapters themselves use the bundled subset.
    """
    folder = download_dataset("mnist", root)
    images, labels = load_idx_dataset("mnist", split, root=folder)
    return _to_model_range(images), labels


def _to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) pixels, 0 = background, to float32 (N, 1, 28, 28) in [-1, 1]."""
    return images.unsqueeze(1).to(torch.float32) / 127.5 - 1.0
