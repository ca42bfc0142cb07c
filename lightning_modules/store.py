"""fsspec helpers shared by every stage: URLs in, URLs out, hashes on every write."""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import time
import uuid
from typing import Any, BinaryIO, Callable, Optional, TypeVar

import fsspec
import numpy as np
from fsspec.core import url_to_fs

from lightning_modules.errors import DataError, StoreError, first_line, is_transient

log = logging.getLogger(__name__)
T = TypeVar("T")
SCHEMES = ("file", "s3")  # besides plain local paths
# S3's rules: 3-63 characters, lower-case letters, digits, '.', '-', alphanumeric at both ends.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# Tries of one store call that fails with a network or service error (backoff 1 s, 2 s, 4 s...).
RETRIES = int(os.environ.get("IMGCLF_STORE_RETRIES", "3"))


def normalize(url: str) -> str:
    """Local paths become absolute (Ray workers and tasks run elsewhere); URLs stay as given."""
    if "://" not in url:
        return os.path.abspath(os.path.expanduser(url))
    if url.startswith("file://"):
        return os.path.abspath(os.path.expanduser(url[len("file://"):]))
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.rstrip('/')}"  # never strip into the scheme ("s3://" stays a URL)


def url_problem(url: str) -> Optional[str]:
    """What is wrong with a store URL's form (no network), or None. Used by the configs' checks
    so a bad --store fails before any work, in the CLI and in the Prefect form alike."""
    if not url.strip():
        return "empty"
    if "://" not in url:
        return None
    scheme, rest = url.split("://", 1)
    if scheme not in SCHEMES:
        return (f"unknown scheme {scheme + '://'!r}; use a local path, file://PATH or "
                "s3://BUCKET/PREFIX")
    if scheme == "s3":
        bucket = rest.split("/", 1)[0]
        if not bucket:
            return "no bucket named; use s3://BUCKET/PREFIX"
        if not _BUCKET.match(bucket) or ".." in bucket:
            return (f"bucket name {bucket!r} is not valid (3-63 lower-case letters, digits, "
                    "'.' and '-')")
    return None


def endpoint(url: str) -> str:
    """Where a URL's bytes live, for error messages: the S3 endpoint or 'local disk'."""
    if is_local(url):
        return "local disk"
    if normalize(url).startswith("s3://"):
        return (os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
                or "s3.amazonaws.com")
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.split('/', 1)[0]}"


def retrying(url: str, what: str, call: Callable[[], T]) -> T:
    """call(), tried again with backoff on network and service errors; when it gives up, one
    StoreError naming the URL and the endpoint. Bad input is never retried."""
    for attempt in range(1, RETRIES + 1):
        try:
            return call()
        except Exception as e:
            if not is_transient(e):
                raise
            if attempt == RETRIES:
                raise StoreError(f"{what} {url}: {endpoint(url)} did not answer after "
                                 f"{RETRIES} tries ({first_line(e, 160)})") from e
            delay = 2 ** (attempt - 1)
            # The log file's line, not the console's: the console gets one line if it gives up.
            log.info("%s %s failed (%s); retrying in %d s", what, url, first_line(e, 160), delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


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

    def write() -> dict[str, Any]:
        fs.makedirs(fs._parent(path), exist_ok=True)
        with fs.open(path, "wb") as f:
            w = HashingWriter(f)
            np.lib.format.write_array(w, np.ascontiguousarray(arr), allow_pickle=False)
        return {"sha256": w.sha.hexdigest(), "bytes": w.size}
    return retrying(url, "writing", write)


def write_bytes(url: str, data: bytes) -> dict[str, Any]:
    """Readers see the old file or the new one, never a part: a local file is written beside
    its place and renamed over it; an object store's PUT replaces the object whole."""
    fs, path = filesystem(url)

    def write() -> None:
        fs.makedirs(fs._parent(path), exist_ok=True)
        if not is_local(url):
            with fs.open(path, "wb") as f:
                f.write(data)
            return
        tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{uuid.uuid4().hex}")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    retrying(url, "writing", write)
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def write_json(url: str, obj: Any) -> dict[str, Any]:
    return write_bytes(url, json.dumps(obj, indent=2, sort_keys=True).encode())


def read_bytes(url: str) -> bytes:
    fs, path = filesystem(url)
    return retrying(url, "reading", lambda: fs.cat_file(path))


def sha256_of(url: str, copy_to: Optional[BinaryIO] = None) -> str:
    """SHA-256 of the file at url, read block by block (memory stays bounded), each block also
    written to copy_to when given."""
    fs, path = filesystem(url)
    sha = hashlib.sha256()
    with fs.open(path, "rb") as f:
        for block in iter(lambda: f.read(8 << 20), b""):
            sha.update(block)
            if copy_to is not None:
                copy_to.write(block)
    return sha.hexdigest()


def read_json(url: str) -> Any | None:
    """Parsed JSON at url, or None when there is no such file."""
    fs, path = filesystem(url)
    try:
        return json.loads(retrying(url, "reading", lambda: fs.cat_file(path)))
    except (FileNotFoundError, NotADirectoryError):  # a file where a folder of the path goes
        return None
    except json.JSONDecodeError as e:
        raise DataError(f"{url}: not valid JSON ({e})") from None


def read_npy(url: str, sha256: str | None = None) -> np.ndarray:
    """Load a .npy (never pickles); when sha256 is given, refuse a file that does not match."""
    fs, path = filesystem(url)
    try:
        data = retrying(url, "reading", lambda: fs.cat_file(path))
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

    def rm() -> None:
        if fs.exists(path):
            fs.rm(path, recursive=True)
    retrying(url, "removing", rm)


def remove_quietly(url: str) -> bool:
    """Best-effort clean-up on a path that is already failing: never hides the first error."""
    try:
        remove(url)
        return True
    except Exception as e:
        log.info("could not remove %s (%s); the next run of the same inputs removes it",
                 url, first_line(e, 160))
        return False


def move_tree(src: str, dst: str, last: Optional[str] = None, keep_source: bool = False) -> None:
    """Move a prefix: one rename locally; file-by-file copies then a delete on object stores,
    the file named `last` (the manifest that makes the tree trusted) copied after all others.
    keep_source: leave the copied source for the caller to remove (after its next step)."""
    fs, src_path = filesystem(src)
    dst_path = filesystem(dst)[1]
    if is_local(src):
        os.makedirs(os.path.dirname(dst_path), exist_ok=True)
        os.replace(src_path, dst_path)
        return
    files = retrying(src, "listing", lambda: fs.find(src_path))
    files.sort(key=lambda f: f.rsplit("/", 1)[-1] == last)
    for f in files:
        rel = f[len(src_path):]
        retrying(src + rel, "copying", lambda f=f, rel=rel: fs.copy(f, dst_path + rel))
    if not keep_source:
        remove(src)
