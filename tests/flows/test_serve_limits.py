"""The page under hostile and clumsy clients, against `imgclf serve` as a user starts it (a real
Granian server on loopback): idle and slow clients are dropped in seconds while real requests
go on, over-large requests get their status (413/414/431), a burst queues instead of getting
503, and a file missing from the store is a 404."""
from __future__ import annotations

import concurrent.futures as cf
import json
import shutil
import socket
import time
from collections import Counter
from urllib.parse import urlparse

import httpx
import pytest

from flows.serve import BODY_TIMEOUT_S, MAX_BYTES
from lightning_modules.splits import load_split
from tests.conftest import stop_process_tree
from tests.flows.conftest import png, start_server

pytestmark = pytest.mark.slow  # a live Granian server on loopback

HEADER_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def server(published):
    proc, url = start_server(published[0], "--header-timeout-s", str(HEADER_TIMEOUT_S))
    yield url, proc
    stop_process_tree(proc)


@pytest.fixture(scope="module")
def digit(published) -> bytes:
    return png(load_split(published[1], "test")[0][0, 0])


def _raw(url: str, data: bytes, wait: float = 10) -> bytes:
    """Send raw bytes on a fresh connection; the first bytes of the answer (b'' if closed)."""
    u = urlparse(url)
    with socket.create_connection((u.hostname, u.port)) as s:
        s.settimeout(wait)
        try:
            s.sendall(data)
        except ConnectionError:  # the server answered and closed while we were still sending
            pass
        try:
            return s.recv(200)
        except ConnectionError:
            return b""


def _status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer  # a status line, not a reset
    return int(answer.split()[1])


def _predict(url: str, body: bytes) -> httpx.Response:
    return httpx.post(f"{url}/predict?model=mnist/cnn", content=body,
                      headers={"content-type": "image/png"}, timeout=60)


@pytest.mark.slow  # a live server held by slow clients
def test_idle_clients_cannot_hold_the_page(server, digit):
    """70 clients each send half a request and stall: a real request is answered at once, and
    the server drops the stalled ones after its header timeout."""
    url, _ = server
    u = urlparse(url)
    stalled = []
    for _ in range(70):
        s = socket.create_connection((u.hostname, u.port))
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-")
        stalled.append(s)
    t = time.perf_counter()
    r = _predict(url, digit)
    took = time.perf_counter() - t
    assert r.status_code == 200 and took < 2.0, (r.status_code, took)
    time.sleep(HEADER_TIMEOUT_S + 1.5)
    closed = 0
    for s in stalled:
        s.settimeout(1)
        try:
            closed += s.recv(1) == b""
        except ConnectionError:
            closed += 1
        except socket.timeout:
            pass
        s.close()
    assert closed == 70


@pytest.mark.parametrize("request_bytes,status", [
    (b"GET /models?q=" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET /models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n", 431),
    (b"GET /models?q=" + b"a" * 1_000_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431),
    (b"POST /predict?model=mnist/cnn HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
     b"Content-Length: " + str(3 * MAX_BYTES).encode() + b"\r\n\r\n" + b"a" * 1000, 413),
], ids=["100KB-query", "1MB-header", "1MB-query", "declared-6MB-body"])
def test_oversized_requests_get_their_status(server, request_bytes, status):
    url, _ = server
    assert _status(_raw(url, request_bytes)) == status
    assert httpx.get(f"{url}/models", timeout=10).status_code == 200  # still serving


def test_an_undeclared_oversized_body_is_cut_off_with_413(server):
    def chunks():
        for _ in range(MAX_BYTES // 65536 + 4):
            yield b"\0" * 65536
    url, _ = server
    r = httpx.post(f"{url}/predict?model=mnist/cnn", content=chunks(),
                   headers={"content-type": "image/png"}, timeout=30)
    assert r.status_code == 413 and "limit" in r.json()["detail"]


@pytest.mark.slow  # a live server held by slow clients
def test_a_body_that_never_arrives_gets_408(server):
    url, _ = server
    t = time.perf_counter()
    answer = _raw(url, b"POST /predict?model=mnist/cnn HTTP/1.1\r\nHost: x\r\nContent-Type: "
                       b"image/png\r\nContent-Length: 5000\r\n\r\n" + b"a" * 100,
                  wait=BODY_TIMEOUT_S + 10)
    assert _status(answer) == 408
    assert time.perf_counter() - t < BODY_TIMEOUT_S + 5


@pytest.mark.slow  # a live server held by slow clients
def test_a_burst_queues_instead_of_503(server, digit):
    url, _ = server
    with cf.ThreadPoolExecutor(200) as pool:
        codes = Counter(pool.map(lambda _: _predict(url, digit).status_code, range(200)))
    assert codes == {200: 200}, codes


def test_a_file_missing_from_the_store_is_404(published, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(published[0], store)
    latest = store / "runs" / "latest.json"  # point the copy's pointer at the copy
    latest.write_text(json.dumps({"run_id": "run-s", "uri": str(store / "runs" / "run-s")}))
    (store / "runs" / "run-s" / "comparison.html").unlink()
    (store / "runs" / "run-s" / "mnist" / "cnn" / "confusion.png").unlink()
    proc, url = start_server(str(store))
    try:
        for path in ("/runs/latest/comparison.html", "/models/mnist/cnn/confusion.png"):
            r = httpx.get(url + path, timeout=10)
            assert r.status_code == 404 and r.json()["detail"] == "not found in the store", path
    finally:
        stop_process_tree(proc)
    out = proc.stdout.read()
    assert "Traceback" not in out, out
