"""The IDX file format that MNIST and Fashion-MNIST are published in (chapter 02).

An IDX file is a tiny header followed by raw numbers:

    bytes 0-1   zero
    byte  2     element type (0x08 = unsigned byte, ...)
    byte  3     number of dimensions, d
    next 4*d    each dimension's size, big-endian uint32
    the rest    the elements, big-endian, in C order

So MNIST's training images are ``00 00 08 03 | 60000 28 28 | 47,040,000 bytes``. Files are usually
gzip-compressed; ``read_idx`` handles both.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

# IDX element-type byte -> big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def parse_idx(data: bytes, *, source: str = "IDX data") -> np.ndarray:
    """Decode the bytes of an (uncompressed) IDX file into an array of its shape, native byte order.

    ``source`` names the data in error messages (pass the file name).
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{source} is not an IDX file: it should start with two zero bytes.")
    type_code, ndim = data[2], data[3]
    if type_code not in IDX_DTYPES:
        raise ValueError(f"{source} has unknown IDX element type 0x{type_code:02x}.")
    header_end = 4 + 4 * ndim
    if len(data) < header_end:
        raise ValueError(f"{source} is truncated inside its header.")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header_end != expected:
        raise ValueError(
            f"{source} should hold {expected} bytes of data for shape {shape}, "
            f"but holds {len(data) - header_end}: the file is truncated or corrupted."
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_end).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # a writable copy in native byte order


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file, gzip-compressed (``.gz``) or not, into a numpy array."""
    raw = Path(path).read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        raw = gzip.decompress(raw)
    return parse_idx(raw, source=str(path))


def write_idx(array: np.ndarray) -> bytes:
    """Encode an array as IDX bytes (the inverse of ``parse_idx``); used to make test fixtures."""
    array = np.asarray(array)
    for code, dtype in IDX_DTYPES.items():  # noqa: B007 - code is used after the break
        if array.dtype.newbyteorder("=") == dtype.newbyteorder("="):
            break
    else:
        raise TypeError(f"IDX cannot store dtype {array.dtype}; use one of uint8, int8, int16, int32, float32, float64.")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=dtype).tobytes()
