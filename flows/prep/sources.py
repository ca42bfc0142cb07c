"""Where raw data comes from: the canonical downloads (verified, cached) and source fingerprints."""
from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import uuid
from dataclasses import dataclass

import fsspec

from lightning_modules.errors import DataError
from lightning_modules.store import filesystem, join, normalize, retrying

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteFile:
    """One canonical file: its mirrors and the checksum a download must match."""

    name: str
    urls: tuple[str, ...]
    # SHA-256 of the gunzipped payload, so re-gzipped mirrors verify too.
    payload_sha256: str | None = None
    md5: str | None = None  # of the file itself, where only that is published

    def verify(self, data: bytes, url: str) -> None:
        if self.md5 is not None:
            got = hashlib.md5(data).hexdigest()
            want = self.md5
        else:
            try:
                got = hashlib.sha256(gzip.decompress(data)).hexdigest()
            except (OSError, EOFError) as e:
                raise DataError(f"{url}: download is not valid gzip ({e})") from None
            want = self.payload_sha256
        if got != want:
            raise DataError(f"{url}: checksum mismatch (got {got[:16]}…, want {want[:16]}…)")


def idx_files(bases: tuple[str, ...], sums: dict[str, str]) -> list[RemoteFile]:
    """The four IDX files of an MNIST-like set, each at every mirror base."""
    return [RemoteFile(n, tuple(b + n for b in bases), payload_sha256=s) for n, s in sums.items()]


def download(f: RemoteFile, folder: str) -> str:
    """A verified local copy of f in folder: the cached one, else the first mirror that verifies."""
    folder = normalize(folder)
    os.makedirs(folder, exist_ok=True)
    dest = os.path.join(folder, f.name)
    if os.path.exists(dest):
        with open(dest, "rb") as fh:
            try:
                f.verify(fh.read(), dest)
                return dest
            except DataError:
                log.warning("cached %s fails its checksum; downloading again", dest)
    failures = []
    for url in f.urls:
        try:
            with fsspec.open(url, "rb") as fh:
                data = fh.read()
            f.verify(data, url)
        except (OSError, DataError, Exception) as e:  # network errors vary by backend
            failures.append(f"{url}: {e}")
            log.warning("download failed: %s: %s", url, e)
            continue
        tmp = f"{dest}.{uuid.uuid4().hex}.part"
        with open(tmp, "wb") as out:
            out.write(data)
        os.replace(tmp, dest)  # never leave a half-written file under the final name
        return dest
    raise DataError(f"could not download {f.name}: " + "; ".join(failures))


def fetch_canonical(kind: str, files: list[RemoteFile], cache_dir: str) -> str:
    """Download (or reuse) the canonical files of a dataset kind; returns the source to read:
    the file itself for a single archive, else their folder."""
    if not files:
        raise DataError(f"dataset {kind!r} has no canonical download; give --source")
    folder = join(normalize(cache_dir), "downloads", kind)
    paths = [download(f, folder) for f in files]
    return paths[0] if len(paths) == 1 else folder


def content_fingerprint(urls: list[str]) -> str:
    """SHA-256 over the bytes and names of a few files (the IDX files, a CIFAR archive)."""
    h = hashlib.sha256()
    for url in urls:
        fs, path = filesystem(url)

        def read(fs=fs, path=path, before=h) -> "hashlib._Hash":
            part = before.copy()  # a retry starts again from the bytes before this file
            with fs.open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 22), b""):
                    part.update(chunk)
            return part
        try:  # a refused or dropped connection is retried and then named as such, not "missing"
            h = retrying(url, "reading", read)
        except FileNotFoundError:
            raise DataError(f"{url}: file is missing") from None
        h.update(url.rsplit("/", 1)[-1].encode() + b"\0")
    return h.hexdigest()


def stat_fingerprint(root: str, infos: dict[str, dict]) -> str:
    """Fingerprint of a big tree from each file's relative path, size and mtime or ETag."""
    h = hashlib.sha256()
    base = filesystem(root)[1].rstrip("/")
    for path in sorted(infos):
        info = infos[path]
        stamp = info.get("ETag") or info.get("mtime") or info.get("LastModified") or ""
        rel = path[len(base):]
        h.update(json.dumps([rel, info.get("size"), str(stamp)]).encode())
    return h.hexdigest()
