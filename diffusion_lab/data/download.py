"""Optional download of the full MNIST and Fashion-MNIST, for learners who are online (chapters 02-05).

The course runs offline on the bundled subset (``load_mnist``); this module is for learners who want
all 60,000 + 10,000 images. Each file is checked against a known digest, written to a temporary file
next to its final place and only then renamed (``os.replace``), so an interrupted download never
leaves a half file under the real name.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diffusion_lab.data._validate import check_choice
from diffusion_lab.data.idx import parse_idx
from diffusion_lab.data.integrity import DataIntegrityError
from diffusion_lab.data.paths import cache_dir

IDX_SPLITS = {  # split -> (images file, labels file), the names every MNIST-style data set uses
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


class DownloadError(RuntimeError):
    """No mirror delivered a file with the expected digest."""


@dataclass(frozen=True)
class FileSpec:
    """One file of a data set and the digest(s) that identify it.

    ``sha256_raw`` is the SHA-256 of the uncompressed content (checked after gunzip, so any mirror's
    re-compression is fine); ``md5_gz`` is the MD5 of the .gz file itself, for data sets that only
    publish that. At least one must be given; every one given is checked.
    """

    filename: str
    sha256_raw: str | None = None
    md5_gz: str | None = None

    def __post_init__(self) -> None:
        if self.sha256_raw is None and self.md5_gz is None:
            raise ValueError(f"FileSpec({self.filename!r}) needs a digest: give sha256_raw or md5_gz.")
        for name, value, length in (("sha256_raw", self.sha256_raw, 64), ("md5_gz", self.md5_gz, 32)):
            if value is not None and (len(value) != length or value.strip("0123456789abcdef")):
                raise ValueError(
                    f"FileSpec({self.filename!r}).{name} must be {length} lowercase hex digits, got {value!r}."
                )

    def mismatch(self, gz_bytes: bytes) -> str | None:
        """Why ``gz_bytes`` is not this file (a sentence), or None if every digest matches."""
        if self.md5_gz is not None:
            actual = hashlib.md5(gz_bytes, usedforsecurity=False).hexdigest()
            if actual != self.md5_gz:
                return f"MD5 of the .gz is {actual}, expected {self.md5_gz}"
        if self.sha256_raw is not None:
            try:
                actual = hashlib.sha256(gzip.decompress(gz_bytes)).hexdigest()
            except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError
                return f"not a valid gzip file ({error})"
            if actual != self.sha256_raw:
                return f"SHA-256 of the uncompressed content is {actual}, expected {self.sha256_raw}"
        return None


@dataclass(frozen=True)
class DatasetSpec:
    """A downloadable data set: its cache folder name, mirrors (tried in order) and files."""

    name: str
    base_urls: tuple[str, ...]
    files: tuple[FileSpec, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.base_urls, tuple) or not self.base_urls:
            raise TypeError(f"DatasetSpec {self.name!r}: base_urls must be a non-empty tuple of URLs, e.g. ('https://host/mnist/',).")
        if not isinstance(self.files, tuple) or not all(isinstance(f, FileSpec) for f in self.files):
            raise TypeError(f"DatasetSpec {self.name!r}: files must be a tuple of FileSpec.")

    def file(self, filename: str) -> FileSpec:
        """The ``FileSpec`` called ``filename``."""
        for spec in self.files:
            if spec.filename == filename:
                return spec
        raise ValueError(f"{self.name} has no file {filename!r}; it has {[f.filename for f in self.files]}.")


# Uncompressed SHA-256s of the original MNIST files, as listed in ../shared/data/mnist/README.md and
# checked against those files by tests/test_data_download.py.
MNIST = DatasetSpec(
    name="mnist",
    base_urls=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    files=(
        FileSpec(
            "train-images-idx3-ubyte.gz",
            sha256_raw="ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        ),
        FileSpec(
            "train-labels-idx1-ubyte.gz",
            sha256_raw="65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        ),
        FileSpec(
            "t10k-images-idx3-ubyte.gz",
            sha256_raw="0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        ),
        FileSpec(
            "t10k-labels-idx1-ubyte.gz",
            sha256_raw="ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        ),
    ),
)

# MD5s of the .gz files as published in zalandoresearch/fashion-mnist's README and used by
# torchvision.datasets.FashionMNIST (its uncompressed SHA-256s were not available when this was written).
FASHION_MNIST = DatasetSpec(
    name="fashion_mnist",
    base_urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    files=(
        FileSpec("train-images-idx3-ubyte.gz", md5_gz="8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        FileSpec("train-labels-idx1-ubyte.gz", md5_gz="25c81989df183df01b3e8a0aad5dffbe"),
        FileSpec("t10k-images-idx3-ubyte.gz", md5_gz="bef4ecab320f06d8554ea6380940ec79"),
        FileSpec("t10k-labels-idx1-ubyte.gz", md5_gz="bb300cfdad3c16e7a12a480ee83cd310"),
    ),
)

DATASETS = {spec.name: spec for spec in (MNIST, FASHION_MNIST)}


def _resolve(spec_or_name: DatasetSpec | str) -> DatasetSpec:
    if isinstance(spec_or_name, DatasetSpec):
        return spec_or_name
    if isinstance(spec_or_name, str):
        return DATASETS[check_choice("data set", spec_or_name.lower().replace("-", "_"), DATASETS)]
    raise TypeError(f"expected a DatasetSpec or one of {sorted(DATASETS)}, got {type(spec_or_name).__name__}.")


def _root(spec: DatasetSpec, root: str | Path | None) -> Path:
    return cache_dir() / spec.name if root is None else Path(root).expanduser()


def _fetch(url: str, folder: Path, timeout: float) -> Path:
    """Stream ``url`` into a new temporary file in ``folder`` and return its path."""
    handle, name = tempfile.mkstemp(dir=folder, prefix=".download-", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


def download_dataset(
    spec_or_name: DatasetSpec | str, root: str | Path | None = None, *, timeout: float = 30
) -> Path:
    """Download every file of a data set (``"mnist"``, ``"fashion_mnist"`` or a ``DatasetSpec``).

    Files already present with the right digest are kept. Returns the folder holding the .gz files,
    by default ``cache_dir() / name`` (``~/.cache/diffusion_lab/mnist``). Raises ``DownloadError``,
    listing every URL tried and why it failed, when no mirror delivers a valid copy.
    """
    spec = _resolve(spec_or_name)
    folder = _root(spec, root)
    folder.mkdir(parents=True, exist_ok=True)
    for file in spec.files:
        final = folder / file.filename
        if final.is_file() and file.mismatch(final.read_bytes()) is None:
            continue
        attempts = []
        for base in spec.base_urls:
            url = base if base.endswith("/") else base + "/"
            url += file.filename
            try:
                part = _fetch(url, folder, timeout)
            except (OSError, http.client.HTTPException, ValueError) as error:  # URLError, HTTPError, timeouts
                attempts.append(f"  {url}: {getattr(error, 'reason', None) or error}")
                continue
            problem = file.mismatch(part.read_bytes())
            if problem is None:
                os.replace(part, final)  # atomic: the final name only ever holds a verified file
                break
            part.unlink()
            attempts.append(f"  {url}: downloaded, but the {problem}")
        else:
            tried = "\n".join(attempts)
            raise DownloadError(
                f"could not download {file.filename} for {spec.name}. Tried:\n{tried}\n"
                f"Check your internet connection (or try again later). The course does not need this "
                f"download: the bundled MNIST subset (diffusion_lab.data.load_mnist) works offline."
            )
    return folder


def load_idx_dataset(
    spec_or_name: DatasetSpec | str, split: str = "train", root: str | Path | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a downloaded data set's ``"train"`` or ``"test"`` split, checking the digests first.

    Returns ``(images, labels)``: uint8 (N, 28, 28) and int64 (N,).
    """
    spec = _resolve(spec_or_name)
    check_choice("split", split, IDX_SPLITS)
    folder = _root(spec, root)
    arrays = []
    for filename in IDX_SPLITS[split]:
        path = folder / filename
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: download it first with "
                f"diffusion_lab.data.download_dataset({spec.name!r}, root={str(folder)!r})."
            )
        gz_bytes = path.read_bytes()
        problem = spec.file(filename).mismatch(gz_bytes)
        if problem is not None:
            raise DataIntegrityError(
                f"{path} is corrupted: its {problem}. To fix it, delete it and run download_dataset again."
            )
        arrays.append(parse_idx(gzip.decompress(gz_bytes), source=str(path)))
    images, labels = arrays
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{folder} holds {images.shape[0]} images but {labels.shape[0]} labels for {split!r}.")
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))
