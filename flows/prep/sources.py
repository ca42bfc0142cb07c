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


def _idx_files(bases: tuple[str, ...], sums: dict[str, str]) -> list[RemoteFile]:
    return [RemoteFile(n, tuple(b + n for b in bases), payload_sha256=s) for n, s in sums.items()]


CANONICAL: dict[str, list[RemoteFile]] = {
    "mnist": _idx_files(
        ("https://ossci-datasets.s3.amazonaws.com/mnist/",
         "https://storage.googleapis.com/cvdf-datasets/mnist/",
         "http://yann.lecun.com/exdb/mnist/"),
        {"train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
         "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
         "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
         "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"}),
    "fashion-mnist": _idx_files(
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
         "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
        {"train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
         "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
         "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
         "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"}),
    "cifar10": [RemoteFile("cifar-10-python.tar.gz",
                           ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                           md5="c58f30108f718f92721af3b95e74349a")],
}


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


def fetch_canonical(kind: str, cache_dir: str) -> str:
    """Download (or reuse) the canonical files of a dataset kind; returns the source to read."""
    if kind not in CANONICAL:
        raise DataError(f"dataset {kind!r} has no canonical download; give --source")
    folder = join(normalize(cache_dir), "downloads", kind)
    paths = [download(f, folder) for f in CANONICAL[kind]]
    return paths[0] if kind == "cifar10" else folder


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
