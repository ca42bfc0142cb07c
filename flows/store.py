"""fsspec helpers shared by every stage: URLs in, URLs out, hashes on every write."""
from __future__ import annotations

import hashlib
import io
import json
import os
from typing import Any, BinaryIO

import fsspec
import numpy as np
from fsspec.core import url_to_fs

from flows.errors import DataError


def normalize(url: str) -> str:
    """Local paths become absolute (Ray workers and tasks run elsewhere); URLs stay as given."""
    if "://" not in url:
        return os.path.abspath(os.path.expanduser(url))
    if url.startswith("file://"):
        return os.path.abspath(os.path.expanduser(url[len("file://"):]))
    return url.rstrip("/")


def join(url: str, *parts: str) -> str:
    """Join URL parts with '/' (fsspec paths always use '/')."""
    return "/".join([url.rstrip("/"), *[p.strip("/") for p in parts]])


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem and in-filesystem path for a URL or local path."""
    return url_to_fs(normalize(url))


def is_local(url: str) -> bool:
    return "://" not in normalize(url)


class HashingWriter(io.RawIOBase):
    """A write-only file wrapper that hashes what passes through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.sha, self.size = raw, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        self.sha.update(view)
        self.size += len(view)
        self.raw.write(view)
        return len(view)


def write_npy(url: str, arr: np.ndarray) -> dict[str, Any]:
    """Write an array as .npy; returns its SHA-256 and size for the manifest."""
    fs, path = filesystem(url)
    fs.makedirs(fs._parent(path), exist_ok=True)
    with fs.open(path, "wb") as f:
        w = HashingWriter(f)
        np.lib.format.write_array(w, np.ascontiguousarray(arr), allow_pickle=False)
    return {"sha256": w.sha.hexdigest(), "bytes": w.size}


def write_bytes(url: str, data: bytes) -> dict[str, Any]:
    fs, path = filesystem(url)
    fs.makedirs(fs._parent(path), exist_ok=True)
    with fs.open(path, "wb") as f:
        f.write(data)
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def write_json(url: str, obj: Any) -> dict[str, Any]:
    return write_bytes(url, json.dumps(obj, indent=2, sort_keys=True).encode())


def read_bytes(url: str) -> bytes:
    fs, path = filesystem(url)
    return fs.cat_file(path)


def read_json(url: str) -> Any | None:
    """Parsed JSON at url, or None when there is no such file."""
    fs, path = filesystem(url)
    try:
        with fs.open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as e:
        raise DataError(f"{url}: not valid JSON ({e})") from None


def read_npy(url: str, sha256: str | None = None) -> np.ndarray:
    """Load a .npy (never pickles); when sha256 is given, refuse a file that does not match."""
    fs, path = filesystem(url)
    try:
        data = fs.cat_file(path)
    except FileNotFoundError:
        raise DataError(f"{url}: missing") from None
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise DataError(f"{url}: SHA-256 does not match the manifest (corrupt or tampered)")
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as e:
        raise DataError(f"{url}: not a plain .npy array ({e})") from None


def remove(url: str) -> None:
    fs, path = filesystem(url)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def move_tree(src: str, dst: str) -> None:
    """Move a prefix: one rename locally; file-by-file copies then a delete on object stores."""
    fs, src_path = filesystem(src)
    dst_path = filesystem(dst)[1]
    if is_local(src):
        os.makedirs(os.path.dirname(dst_path), exist_ok=True)
        os.replace(src_path, dst_path)
        return
    files = fs.find(src_path)
    fs.copy(files, [dst_path + f[len(src_path):] for f in files])
    fs.rm(src_path, recursive=True)
