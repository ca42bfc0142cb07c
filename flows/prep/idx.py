"""MNIST-style IDX files (gzipped): strict parsing with errors that name the file."""
from __future__ import annotations

import gzip
import struct
import zlib

import numpy as np

from lightning_modules.errors import DataError
from lightning_modules.store import filesystem, join

IDX_FILES = {
    "train_x": "train-images-idx3-ubyte.gz",
    "train_y": "train-labels-idx1-ubyte.gz",
    "test_x": "t10k-images-idx3-ubyte.gz",
    "test_y": "t10k-labels-idx1-ubyte.gz",
}
_UBYTE = 0x08


def gunzip(url: str) -> bytes:
    """The decompressed payload of a .gz file, or a DataError saying what is wrong with it."""
    fs, path = filesystem(url)
    try:
        raw = fs.cat_file(path)
    except FileNotFoundError:
        raise DataError(f"{url}: file is missing") from None
    try:
        return gzip.decompress(raw)
    except gzip.BadGzipFile:
        raise DataError(f"{url}: not a gzip file") from None
    except (EOFError, zlib.error) as e:
        raise DataError(f"{url}: truncated or corrupt gzip data ({e})") from None


def parse_idx(data: bytes, url: str, ndim: int) -> np.ndarray:
    """Parse an unsigned-byte IDX payload with exactly `ndim` dimensions."""
    if len(data) < 4:
        raise DataError(f"{url}: too short to be an IDX file ({len(data)} bytes)")
    zero, dtype, got_ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != _UBYTE:
        raise DataError(f"{url}: wrong IDX magic {data[:4].hex()} (want 0000 08 0{ndim})")
    if got_ndim != ndim:
        raise DataError(f"{url}: IDX has {got_ndim} dimensions, expected {ndim}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{url}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if any(d == 0 for d in dims[1:]):
        raise DataError(f"{url}: IDX dimensions {dims} hold a zero")
    want = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != want:
        problem = "truncated" if len(data) < want else "has trailing bytes"
        raise DataError(f"{url}: IDX data {problem}: {len(data)} bytes, header says {want}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def load_pair(images_url: str, labels_url: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images as N×1×H×W uint8 and labels as int64, checked against each other."""
    x = parse_idx(gunzip(images_url), images_url, 3)
    y = parse_idx(gunzip(labels_url), labels_url, 1)
    if len(x) != len(y):
        raise DataError(f"{images_url}: {len(x)} images but {labels_url} has {len(y)} labels")
    if len(y) and int(y.max()) >= num_classes:
        raise DataError(f"{labels_url}: label {int(y.max())} out of range 0..{num_classes - 1}")
    return x[:, None, :, :], y.astype(np.int64)


def load_idx_dataset(source: str, classes: list[str]) -> dict:
    """All four IDX files of an MNIST-like source folder."""
    n = len(classes)
    urls = {k: join(source, name) for k, name in IDX_FILES.items()}
    train_x, train_y = load_pair(urls["train_x"], urls["train_y"], n)
    test_x, test_y = load_pair(urls["test_x"], urls["test_y"], n)
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(f"{source}: train images {train_x.shape[1:]} and test images "
                        f"{test_x.shape[1:]} differ in shape")
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y,
            "classes": list(classes), "skipped": []}
