"""Small, generated inputs for tests: IDX files, CIFAR batches, image trees (good and broken)."""
from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

# Shared with the benchmarks, which must not import tests/.
from bench.fixtures import idx_subset, png, random_bundle  # noqa: F401


def idx_bytes(arr: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write_idx_set(folder: Path, n_train: int = 200, n_test: int = 50, classes: int = 10,
                  seed: int = 0) -> Path:
    """The four MNIST-named .gz files with random 28×28 digits and balanced labels."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % classes).astype(np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(x)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(y)))
    return folder


def cifar_batch(n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return pickle.dumps({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"labels": [int(v) for v in np.arange(n) % 10],
                         b"batch_label": b"test"}, protocol=2)


def cifar_members(n: int = 20) -> dict[str, bytes]:
    out = {f"data_batch_{i}": cifar_batch(n, i) for i in range(1, 6)}
    out["test_batch"] = cifar_batch(n, 9)
    out["batches.meta"] = pickle.dumps(
        {b"label_names": [f"c{i}".encode() for i in range(10)]}, protocol=2)
    return out


def write_cifar_tarball(path: Path, members: dict[str, bytes] | None = None,
                        extra: list[tarfile.TarInfo] | None = None) -> Path:
    members = cifar_members() if members is None else members
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return path


def image_bytes(fmt: str = "PNG", mode: str = "L", size: tuple[int, int] = (12, 12),
                value: int = 128) -> bytes:
    if mode == "CMYK":
        im = Image.new("CMYK", size, (value, 0, 0, 0))
    elif mode == "I;16":
        im = Image.fromarray(np.full(size[::-1], value * 200, dtype=np.uint16))
    else:
        im = Image.new(mode, size, value if mode in ("L", "P") else (value,) * len(mode))
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def write_tree(root: Path, classes: int = 3, per_class: int = 6, split: bool = True,
               size: tuple[int, int] = (12, 12), mode: str = "L") -> Path:
    """train/<c>/*.png + test/<c>/*.png (or <c>/*.png) with class-coded pixel values."""
    for s in (("train", "test") if split else ("",)):
        for c in range(classes):
            d = root / s / f"class{c}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                (d / f"{i}.png").write_bytes(image_bytes("PNG", mode, size, 40 * c + 10))
    return root


class RunsCode:
    """Pickles into a call of os.system that creates `marker`: what a malicious file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.marker}",))
