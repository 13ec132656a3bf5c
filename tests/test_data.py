"""diffusion_lab.data: toys, photo, the bundled MNIST subset, the downloader (on loopback), shapes."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from diffusion_lab.data import (
    TOY_NAMES,
    DataIntegrityError,
    DownloadError,
    download,
    download_dataset,
    full_mnist_tensors,
    load_idx_dataset,
    load_mnist,
    load_photo,
    make_shapes,
    make_toy,
    mnist_tensors,
)
from diffusion_lab.data.download import MNIST, DatasetSpec, FileSpec
from diffusion_lab.data.idx import write_idx
from diffusion_lab.data.paths import CACHE_ENV, data_dir
from diffusion_lab.data.shapes import HELD_OUT, SHAPES

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


# ----- toys and photo ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", TOY_NAMES)
def test_toys_are_deterministic_2d_and_unit_scaled(name):
    x = make_toy(name, 4000, seed=3)
    assert x.shape == (4000, 2) and x.dtype == torch.float32
    assert torch.equal(x, make_toy(name, 4000, seed=3))
    assert not torch.equal(x, make_toy(name, 4000, seed=4))
    assert x.mean(0).abs().max() < 0.3 and 0.4 < float(x.std(0).min()) and float(x.std(0).max()) < 1.6


@pytest.mark.parametrize(("name", "n", "error", "match"), [
    ("spiral", 10, ValueError, "swiss_roll"), ("moons", 0, ValueError, "n"), ("moons", True, TypeError, "n"),
])
def test_toy_bad_inputs(name, n, error, match):
    with pytest.raises(error, match=match):
        make_toy(name, n)


def test_photo_shape_range_and_grey():
    x = load_photo(32)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert -1 <= float(x.min()) < -0.5 and 0.5 < float(x.max()) <= 1
    assert load_photo(32, grey=True).shape == (1, 32, 32)
    with pytest.raises(ValueError, match="size"):
        load_photo(4)


# ----- the bundled MNIST subset --------------------------------------------------------------------

def test_mnist_subset_is_balanced_and_well_formed():
    images, labels = load_mnist("train")
    assert images.shape == (20_000, 28, 28) and images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert torch.bincount(labels).tolist() == [2000] * 10
    test_images, test_labels = load_mnist("test")
    assert test_images.shape == (2000, 28, 28) and torch.bincount(test_labels).tolist() == [200] * 10
    x, y = mnist_tensors("train", n=100)
    assert x.shape == (100, 1, 28, 28) and float(x.min()) == -1 and float(x.max()) == 1
    assert torch.bincount(y).tolist() == [10] * 10
    with pytest.raises(ValueError, match="split"):
        load_mnist("validation")


def _copy_mnist(tmp_path: Path) -> Path:
    root = tmp_path / "mnist"
    shutil.copytree(data_dir() / "mnist", root)
    return root


def test_corrupted_mnist_is_refused_with_the_fix(tmp_path):
    root = _copy_mnist(tmp_path)
    npz = root / "mnist_subset.npz"
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    with pytest.raises(DataIntegrityError, match="(?s)mnist_subset.npz.*git checkout"):
        load_mnist("train", root=root)


def test_missing_mnist_file_says_where_it_looked(tmp_path):
    root = _copy_mnist(tmp_path)
    (root / "mnist_subset.npz").unlink()
    with pytest.raises(FileNotFoundError, match="mnist_subset.npz"):
        load_mnist("train", root=root)


# ----- the downloader, served from loopback --------------------------------------------------------

def _fake_dataset(folder: Path) -> DatasetSpec:
    """Small IDX files gzipped into ``folder``, and a spec whose digests match them."""
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte.gz": np.arange(6, dtype=np.uint8),
              "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte.gz": np.arange(3, dtype=np.uint8)}
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for name, array in arrays.items():
        raw = write_idx(array)
        (folder / name).write_bytes(gzip.compress(raw))
        files.append(FileSpec(name, sha256_raw=hashlib.sha256(raw).hexdigest()))
    return DatasetSpec("fake", ("http://unused/",), tuple(files))


class _Server:
    def __init__(self, folder: Path):
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                outer.requests.append(self.path)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=folder))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tmp_path):
    spec = _fake_dataset(tmp_path / "served")
    server = _Server(tmp_path / "served")
    yield spec, server, tmp_path / "served"
    server.close()


def _with_urls(spec: DatasetSpec, *urls: str) -> DatasetSpec:
    return DatasetSpec(spec.name, tuple(urls), spec.files)


def test_download_verifies_and_loads(served, tmp_path):
    spec, server, _ = served
    folder = download_dataset(_with_urls(spec, server.url), root=tmp_path / "cache")
    images, labels = load_idx_dataset(spec, "train", root=folder)
    assert images.shape == (6, 28, 28) and labels.tolist() == list(range(6))
    assert not list(folder.glob("*.part")) and not [p for p in folder.iterdir() if p.name.startswith(".")]


def _serve_as_mnist(monkeypatch, spec: DatasetSpec, url: str, cache: Path) -> None:
    """Make "mnist" mean the served fake data set, its cache under ``cache``: the real one is never fetched."""
    monkeypatch.setitem(download.DATASETS, "mnist", DatasetSpec("mnist", (url,), spec.files))
    monkeypatch.setenv(CACHE_ENV, str(cache))


def test_full_mnist_downloads_once_and_scales_like_the_subset(served, tmp_path, monkeypatch):
    spec, server, folder = served
    _serve_as_mnist(monkeypatch, spec, server.url, tmp_path / "cache")
    x0, labels = full_mnist_tensors("train")
    raw, _ = load_idx_dataset(spec, "train", root=folder)
    assert x0.shape == (6, 1, 28, 28) and x0.dtype == torch.float32 and labels.tolist() == list(range(6))
    assert torch.equal(x0, raw.unsqueeze(1).float() / 127.5 - 1)  # 0 -> -1, 255 -> 1, as mnist_tensors
    assert (tmp_path / "cache" / "mnist" / "train-images-idx3-ubyte.gz").is_file()
    n = len(server.requests)
    assert full_mnist_tensors("test")[0].shape == (3, 1, 28, 28) and len(server.requests) == n  # no new download


def test_a_preset_on_full_mnist_trains_on_every_digit(served, tmp_path, monkeypatch):
    from diffusion_lab.cli.presets import get_preset
    from diffusion_lab.cli.training_data import load_training_data

    spec, server, _ = served
    _serve_as_mnist(monkeypatch, spec, server.url, tmp_path / "cache")
    images, labels = load_training_data(dataclasses.replace(get_preset("tiny"), data="mnist_full"))
    assert images.shape == (6, 1, 28, 28) and labels is None  # unconditional, as the tiny preset is
    server.close()
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "empty"))
    with pytest.raises(DownloadError, match="bundled MNIST subset"):  # offline: says the subset works offline
        load_training_data(dataclasses.replace(get_preset("tiny"), data="mnist_full"))


def test_present_files_are_not_downloaded_again(served, tmp_path):
    spec, server, _ = served
    download_dataset(_with_urls(spec, server.url), root=tmp_path / "cache")
    n = len(server.requests)
    download_dataset(_with_urls(spec, server.url), root=tmp_path / "cache")
    assert len(server.requests) == n == 4


def test_a_failing_mirror_falls_through_to_the_next(served, tmp_path):
    spec, server, _ = served
    download_dataset(_with_urls(spec, server.url + "missing/", server.url), root=tmp_path / "cache")
    assert any(r.startswith("/missing/") for r in server.requests)
    assert len(list((tmp_path / "cache").glob("*.gz"))) == 4


def test_wrong_content_is_rejected_and_never_kept(served, tmp_path):
    spec, server, folder = served
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(write_idx(np.arange(4, dtype=np.uint8))))
    with pytest.raises(DownloadError, match="(?s)t10k-labels.*SHA-256.*works offline"):
        download_dataset(_with_urls(spec, server.url), root=tmp_path / "cache")
    assert not (tmp_path / "cache" / "t10k-labels-idx1-ubyte.gz").exists()


def test_unreachable_server_is_a_clear_error(served, tmp_path):
    spec, server, _ = served
    dead = server.url
    server.close()
    with pytest.raises(DownloadError, match="could not download"):
        download_dataset(_with_urls(spec, dead), root=tmp_path / "cache", timeout=2)


def test_corrupted_download_is_refused_on_load(served, tmp_path):
    spec, server, _ = served
    folder = download_dataset(_with_urls(spec, server.url), root=tmp_path / "cache")
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(DataIntegrityError, match="corrupted"):
        load_idx_dataset(spec, "train", root=folder)


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="the original MNIST files (../shared/data/mnist) are not here")
def test_mnist_spec_matches_the_original_files():
    for file in MNIST.files:
        assert file.mismatch((SHARED_MNIST / file.filename).read_bytes()) is None, file.filename


# ----- shapes --------------------------------------------------------------------------------------

def test_shapes_are_deterministic_captioned_and_scored():
    a, b = make_shapes(40, seed=5), make_shapes(40, seed=5)
    assert a.images.shape == (40, 3, 32, 32) and torch.equal(a.images, b.images) and a.captions == b.captions
    assert -1 <= float(a.images.min()) and float(a.images.max()) <= 1
    assert a.attribute_indices.shape == (40, 4)
    for caption, attrs, idx in zip(a.captions, a.attributes, a.attribute_indices):
        assert caption == attrs.caption() and attrs.shape in caption and attrs.colour in caption
        assert SHAPES[int(idx[0])] == attrs.shape
    assert not torch.equal(a.images, make_shapes(40, seed=6).images)


def test_held_out_pairs_stay_out_of_training():
    train = make_shapes(300, split="train")
    held = make_shapes(60, split="held_out")
    assert all((x.colour, x.shape) not in HELD_OUT for x in train.attributes)
    assert all((x.colour, x.shape) in HELD_OUT for x in held.attributes)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"n": 0}, "n"), ({"n": 4, "size": 8}, "size"), ({"n": 4, "split": "test"}, "split"),
])
def test_shapes_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_shapes(**kwargs)
