"""Canonical downloads against a real HTTP server on loopback: mirrors, checksums, cache."""
from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
from functools import partial

import pytest

from flows.prep.sources import RemoteFile, download
from lightning_modules.errors import DataError


@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _remote(base_urls, payload):
    return RemoteFile("f.gz", tuple(f"{b}/f.gz" for b in base_urls),
                      payload_sha256=hashlib.sha256(payload).hexdigest())


def test_falls_back_to_the_next_mirror_and_caches(http_root, tmp_path):
    root, url = http_root
    payload = b"payload bytes" * 100
    (root / "good").mkdir()
    (root / "good" / "f.gz").write_bytes(gzip.compress(payload, mtime=0))
    f = _remote([f"{url}/missing", f"{url}/good"], payload)
    path = download(f, str(tmp_path / "cache"))
    assert gzip.decompress(open(path, "rb").read()) == payload
    (root / "good" / "f.gz").unlink()  # a second call must be served from the cache
    assert download(f, str(tmp_path / "cache")) == path


def test_regzipped_mirror_verifies_by_payload(http_root, tmp_path):
    root, url = http_root
    payload = b"same pixels" * 50
    (root / "f.gz").write_bytes(gzip.compress(payload, compresslevel=1, mtime=12345))
    assert download(_remote([url], payload), str(tmp_path / "c"))


def test_checksum_mismatch_is_an_error_and_nothing_is_cached(http_root, tmp_path):
    root, url = http_root
    (root / "f.gz").write_bytes(gzip.compress(b"tampered"))
    with pytest.raises(DataError, match="checksum mismatch"):
        download(_remote([url], b"the real payload"), str(tmp_path / "c"))
    assert not list((tmp_path / "c").iterdir())
