"""Build the MNIST subset bundled in data/mnist/ from the original MNIST files (used by chapters 02-05).

Run from the repository root:

    python tools/make_mnist_subset.py --source ../shared/data/mnist

It checks the original .gz files against their SHA256SUMS, takes the first 2,000 training and the
first 200 test images of every digit (in file order), interleaves the classes (0, 1, ..., 9, 0, 1, ...)
so that any prefix is class-balanced, and writes

    data/mnist/mnist_subset.npz   train_images uint8 (20000, 28, 28), train_labels uint8 (20000,),
                                  train_index int32 (20000,), and the same for test (2000 rows);
                                  *_index is each image's row in the original file
    data/mnist/SHA256SUMS         the digest of the .npz, checked by diffusion_lab.data.load_mnist
    data/mnist/README.md          provenance and licence

The .npz is written byte-for-byte reproducibly (fixed zip timestamps, fixed entry order), so running
the tool again gives the same SHA-256.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

from diffusion_lab.data.idx import parse_idx
from diffusion_lab.data.integrity import read_sha256sums, sha256_file, verify_sha256

REPO = Path(__file__).resolve().parents[1]
NPZ_NAME = "mnist_subset.npz"
SPLITS = {  # split -> (images file, labels file) in the original distribution
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip file can record


def balanced_rows(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Rows of the first ``per_class`` examples of each class, interleaved 0, 1, ..., 9, 0, 1, ...

    Returns int32 (10 * per_class,), so that rows[:10 * k] holds exactly k examples of every digit.
    """
    per_digit = []
    for digit in range(10):
        rows = np.flatnonzero(labels == digit)[:per_class]
        if len(rows) < per_class:
            raise ValueError(f"only {len(rows)} examples of digit {digit}; ask for at most that many per class.")
        per_digit.append(rows)
    return np.stack(per_digit, axis=1).reshape(-1).astype(np.int32)  # (per_class, 10) -> interleaved


def write_npz_reproducibly(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like ``np.savez_compressed``, but with fixed timestamps so the same arrays give the same bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(value), allow_pickle=False)
            archive.writestr(info, buffer.getvalue(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)


def readme_text(command: str, source_sums: dict[str, str], raw_sums: dict[str, str], npz_sha: str, npz_bytes: int,
                counts: dict[str, int]) -> str:
    """The data/mnist/README.md text: what the subset is, how it was made, its licence."""
    gz_lines = "\n".join(f"| `{name}` | `{source_sums[name]}` | `{raw_sums[name]}` |" for name in sorted(raw_sums))
    return f"""# MNIST subset bundled with diffusion-lab

`{NPZ_NAME}` ({npz_bytes / 1e6:.1f} MB) holds a class-balanced subset of MNIST, the handwritten-digit
data set, so that chapters 02-05 run offline straight after cloning:

| array | dtype, shape | meaning |
|---|---|---|
| `train_images` | uint8 ({counts["train"]}, 28, 28) | the first 2,000 training images of each digit, in file order |
| `train_labels` | uint8 ({counts["train"]},) | their digits, 0-9 |
| `train_index` | int32 ({counts["train"]},) | each image's row in the original `train-images-idx3-ubyte` |
| `test_images` | uint8 ({counts["test"]}, 28, 28) | the first 200 test images of each digit, in file order |
| `test_labels` | uint8 ({counts["test"]},) | their digits |
| `test_index` | int32 ({counts["test"]},) | each image's row in the original `t10k-images-idx3-ubyte` |

Rows are interleaved by class (0, 1, ..., 9, 0, 1, ...), so the first `10 * k` rows hold exactly `k`
images of every digit. Pixels are unchanged (0 = background, 255 = ink).

Load it with `diffusion_lab.data.load_mnist()` (uint8 images, int64 labels) or
`diffusion_lab.data.mnist_tensors()` (float32 in [-1, 1], shape (N, 1, 28, 28)). Both check the file
against `SHA256SUMS` first:

    {npz_sha}  {NPZ_NAME}

The full data set (60,000 + 10,000 images) can be downloaded when online with
`diffusion_lab.data.download_dataset("mnist")`.

## How it was made

From the repository root:

    {command}

`tools/make_mnist_subset.py` first checks the original gzip files against their SHA256SUMS, then
parses the IDX files and writes the arrays above with fixed zip timestamps, so running the same command
again gives a file with the same SHA-256. The source files were:

| file | SHA-256 of the .gz | SHA-256 uncompressed |
|---|---|---|
{gz_lines}

The uncompressed digests are those of the original MNIST files (the same values are in
`diffusion_lab/data/download.py`).

## Credit and licence

MNIST is by Yann LeCun, Corinna Cortes and Christopher J. C. Burges
(<http://yann.lecun.com/exdb/mnist/>), distributed under the Creative Commons Attribution-Share Alike
3.0 licence (CC BY-SA 3.0, <https://creativecommons.org/licenses/by-sa/3.0/>). This subset is a part of
MNIST, unchanged except for the selection and ordering of the images described above, and is shared
under the same licence, CC BY-SA 3.0.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=REPO / ".." / "shared" / "data" / "mnist",
                        help="folder with the original MNIST .gz files and their SHA256SUMS")
    parser.add_argument("--out", type=Path, default=REPO / "data" / "mnist", help="where to write the subset")
    parser.add_argument("--train-per-class", type=int, default=2000)
    parser.add_argument("--test-per-class", type=int, default=200)
    args = parser.parse_args(argv)

    sums_path = args.source / "SHA256SUMS"
    if not sums_path.is_file():
        parser.error(f"{sums_path} not found; pass --source pointing at the folder with the original MNIST files.")
    source_sums = read_sha256sums(sums_path)
    per_class = {"train": args.train_per_class, "test": args.test_per_class}

    arrays: dict[str, np.ndarray] = {}
    raw_sums: dict[str, str] = {}
    for split, (images_name, labels_name) in SPLITS.items():
        decoded = {}
        for name in (images_name, labels_name):
            verify_sha256(args.source / name, source_sums[name], fix=f"replace it with the original from {args.source}")
            raw = gzip.decompress((args.source / name).read_bytes())
            raw_sums[name] = hashlib.sha256(raw).hexdigest()
            decoded[name] = parse_idx(raw, source=name)
        rows = balanced_rows(decoded[labels_name], per_class[split])
        arrays[f"{split}_images"] = decoded[images_name][rows]
        arrays[f"{split}_labels"] = decoded[labels_name][rows].astype(np.uint8)
        arrays[f"{split}_index"] = rows

    args.out.mkdir(parents=True, exist_ok=True)
    npz_path = args.out / NPZ_NAME
    write_npz_reproducibly(npz_path, arrays)
    npz_sha = sha256_file(npz_path)
    (args.out / "SHA256SUMS").write_text(f"{npz_sha}  {NPZ_NAME}\n", encoding="utf-8")

    command = "python tools/make_mnist_subset.py"
    if argv is None:
        command = "python " + " ".join(["tools/make_mnist_subset.py", *sys.argv[1:]])
    counts = {split: len(arrays[f"{split}_labels"]) for split in SPLITS}
    text = readme_text(command, source_sums, raw_sums, npz_sha, npz_path.stat().st_size, counts)
    (args.out / "README.md").write_text(text, encoding="utf-8")
    print(f"wrote {npz_path} ({npz_path.stat().st_size:,} bytes, sha256 {npz_sha})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
