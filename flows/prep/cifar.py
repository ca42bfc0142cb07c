"""CIFAR-10 python batches, from the official tarball or its extracted folder, never run as code."""
from __future__ import annotations

import io
import pickle
import tarfile
import zlib
from typing import Any

import numpy as np

from lightning_modules.errors import DataError
from lightning_modules.store import filesystem, join

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
ALL_MEMBERS = [*TRAIN_BATCHES, "test_batch", "batches.meta"]
# The only globals a genuine CIFAR batch refers to: numpy's array rebuild and dtype.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles only arrays, lists, dicts, bytes and numbers: any other global is refused."""

    def __init__(self, data: bytes, url: str) -> None:
        super().__init__(io.BytesIO(data), encoding="bytes")
        self.url = url

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise DataError(f"{self.url}: refers to {module}.{name}; a CIFAR batch may hold only "
                            "plain arrays, lists, bytes and numbers (refusing to unpickle it)")
        if name == "_reconstruct":
            return np._core.multiarray._reconstruct
        if module == "_codecs":
            import codecs
            return codecs.encode
        return getattr(np, name)


def safe_unpickle(data: bytes, url: str) -> Any:
    try:
        return _PlainUnpickler(data, url).load()
    except DataError:
        raise
    except Exception as e:  # any malformed pickle stream
        raise DataError(f"{url}: not a valid CIFAR batch ({type(e).__name__}: {e})") from None


def _get(d: dict, key: str) -> Any:
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    return None


def parse_batch(data: bytes, url: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch as N×3×32×32 uint8 and int64 labels."""
    d = safe_unpickle(data, url)
    if not isinstance(d, dict):
        raise DataError(f"{url}: a CIFAR batch must be a dict, found {type(d).__name__}")
    x, y = _get(d, "data"), _get(d, "labels")
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        raise DataError(f"{url}: 'data' must be a uint8 array of N×3072")
    if not isinstance(y, list) or not all(isinstance(v, int) for v in y):
        raise DataError(f"{url}: 'labels' must be a list of ints")
    if len(y) != len(x):
        raise DataError(f"{url}: {len(x)} images but {len(y)} labels")
    labels = np.asarray(y, dtype=np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{url}: label {int(labels.max() if labels.max() > 9 else labels.min())} "
                        "out of range 0..9")
    return x.reshape(-1, 3, 32, 32), labels


def parse_meta(data: bytes, url: str) -> list[str]:
    d = safe_unpickle(data, url)
    names = _get(d, "label_names") if isinstance(d, dict) else None
    if not isinstance(names, list) or len(names) != 10:
        raise DataError(f"{url}: 'label_names' must be a list of 10 names")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _check_member(m: tarfile.TarInfo, url: str) -> None:
    parts = m.name.replace("\\", "/").split("/")
    if m.name.startswith("/") or ".." in parts:
        raise DataError(f"{url}: archive member {m.name!r} would land outside its folder")
    if not (m.isfile() or m.isdir()):
        raise DataError(f"{url}: archive member {m.name!r} is a link or special file; refused")


def read_tarball(url: str) -> dict[str, bytes]:
    """The batch files of the tarball, read in memory after every member is checked."""
    fs, path = filesystem(url)
    wanted: dict[str, bytes] = {}
    try:
        with fs.open(path, "rb") as f, tarfile.open(fileobj=f, mode="r|gz") as tar:
            for m in tar:
                _check_member(m, url)
                base = m.name.rsplit("/", 1)[-1]
                if m.isfile() and base in ALL_MEMBERS:
                    wanted[base] = tar.extractfile(m).read()
    except FileNotFoundError:
        raise DataError(f"{url}: file is missing") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise DataError(f"{url}: truncated or corrupt archive ({e})") from None
    return wanted


def read_folder(url: str) -> dict[str, bytes]:
    fs, path = filesystem(url)
    if fs.isdir(join(path, FOLDER)):
        url, path = join(url, FOLDER), join(path, FOLDER)
    out = {}
    for name in ALL_MEMBERS:
        try:
            out[name] = fs.cat_file(join(path, name))
        except FileNotFoundError:
            raise DataError(f"{join(url, name)}: file is missing") from None
    return out


def load_cifar_dataset(source: str) -> dict:
    """CIFAR-10 from a tarball file or a `cifar-10-batches-py/` folder."""
    fs, path = filesystem(source)
    files = read_folder(source) if fs.isdir(path) else read_tarball(source)
    missing = [m for m in ALL_MEMBERS if m not in files]
    if missing:
        raise DataError(f"{source}: missing CIFAR members {missing}")
    train = [parse_batch(files[b], join(source, b)) for b in TRAIN_BATCHES]
    test_x, test_y = parse_batch(files["test_batch"], join(source, "test_batch"))
    return {"train_x": np.concatenate([t[0] for t in train]),
            "train_y": np.concatenate([t[1] for t in train]),
            "test_x": test_x, "test_y": test_y,
            "classes": parse_meta(files["batches.meta"], join(source, "batches.meta")),
            "skipped": []}
