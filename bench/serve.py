"""Serving benchmark over real HTTP on loopback, against `imgclf serve` started as a user does.
Prints JSON:

- per family: single-user POST /predict latency (p50/p99) and throughput at --concurrency;
- burst: --burst requests sent at once (each its own connection): status counts (goal: no
  503, they queue) and p50/p99 of their latency;
- idle: --idle clients each send half a request and stall; the time a real request takes
  meanwhile (goal: < 2 s) and how many idle connections the server has dropped after its
  header timeout.

    python bench/serve.py [--requests 300] [--concurrency 4] [--burst 200] [--idle 70]

Models are real bundles of each family's default structure with untrained weights (latency
does not depend on the weight values), published into a temporary store as the pipeline does."""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

from bench_results import command, write
from fixtures import idx_subset, png, random_bundle
from flows.compare import build
from flows.config import PrepConfig
from flows.evaluate import evaluate_task
from flows.prep.build import prepare
from flows.publish import champions_task, publish_task
from lightning_modules.layout import run_uri
from lightning_modules.nets import FAMILIES
from lightning_modules.splits import load_split

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mnist"
HEADER_TIMEOUT_S = 3.0


def publish(tmp: Path) -> tuple[str, str]:
    store = str(tmp / "store")
    src = idx_subset(SHARED, tmp / "mnist", 300, 100)
    data = prepare(PrepConfig(dataset="mnist", source=str(src), store=store)).uri
    records = []
    for fam in FAMILIES:
        b = random_bundle(store, data, fam, run=f"{fam}-bench")
        records.append({"dataset": "mnist", "family": fam, "bundles": [b],
                        "metrics_uris": [evaluate_task.fn(b)], "error": None})
    run = run_uri(store, "run-bench")
    comp = build("run-bench", records, list(FAMILIES), {}, {}, [])
    publish_task.fn(run, "run-bench", records, comp, {}, {})
    champions_task.fn(store, 0.0, run, "run-bench", comp)
    return store, data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answering(proc: subprocess.Popen, port: int) -> tuple[subprocess.Popen, int]:
    """(proc, port) once the page answers on the port; the server killed if it never does."""
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/models", timeout=2).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("imgclf serve did not start")


def start(store: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "imgclf"), "serve", "--store", store, "--port",
           str(port), "--header-timeout-s", str(HEADER_TIMEOUT_S)]
    return answering(subprocess.Popen(cmd, stdout=subprocess.DEVNULL), port)


def percentiles(ms: list[float]) -> dict:
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def post(url: str, body: bytes, client: httpx.Client | None = None) -> tuple[int, float]:
    t = time.perf_counter()
    send = client.post if client else httpx.post
    code = send(url, content=body, headers={"content-type": "image/png"}, timeout=60).status_code
    return code, (time.perf_counter() - t) * 1000


def family(url: str, body: bytes, requests: int, concurrency: int) -> dict:
    with httpx.Client(timeout=60) as c:
        for _ in range(10):  # warm-up: model load, first allocations
            post(url, body, c)
        lat = [post(url, body, c)[1] for _ in range(requests)]  # one user, one at a time
    with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as shared:
        start = time.perf_counter()
        with cf.ThreadPoolExecutor(concurrency) as pool:
            codes = [c for c, _ in pool.map(lambda _: post(url, body, shared), range(requests))]
        wall = time.perf_counter() - start
    return {**percentiles(lat), "throughput_rps": round(requests / wall, 1),
            "concurrency": concurrency, "errors": sum(c != 200 for c in codes)}


def burst(url: str, body: bytes, n: int) -> dict:
    """n requests at once, each on its own connection: they queue; none should get 503."""
    with cf.ThreadPoolExecutor(n) as pool:
        start = time.perf_counter()
        res = list(pool.map(lambda _: post(url, body), range(n)))
        wall = time.perf_counter() - start
    return {"requests": n, "status": dict(Counter(c for c, _ in res)),
            **percentiles([ms for _, ms in res]), "wall_s": round(wall, 2)}


def idle(port: int, url: str, body: bytes, n: int) -> dict:
    """n clients that send half a request and stall; a real request meanwhile."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-")
        socks.append(s)
    code, ms = post(url, body)
    time.sleep(HEADER_TIMEOUT_S + 1.5)
    dropped = 0
    for s in socks:
        s.settimeout(0.5)
        try:
            dropped += s.recv(1) == b""  # the server closed it
        except (socket.timeout, ConnectionError):
            dropped += isinstance(sys.exc_info()[1], ConnectionError)
        s.close()
    return {"idle_clients": n, "real_request_status": code, "real_request_ms": round(ms, 1),
            "dropped_after_header_timeout": dropped, "header_timeout_s": HEADER_TIMEOUT_S}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--burst", type=int, default=200)
    ap.add_argument("--idle", type=int, default=70)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store, data = publish(Path(tmp))
        digit = png(load_split(data, "test")[0][0, 0])
        proc, port = start(store)
        try:
            url = f"http://127.0.0.1:{port}/predict?model=mnist/"
            out = {"families": {f: family(url + f, digit, args.requests, args.concurrency)
                                for f in FAMILIES},
                   "burst_cnn": burst(url + "cnn", digit, args.burst),
                   "idle": idle(port, url + "cnn", digit, args.idle)}
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    print(write("serve", {"command": command(), "requests": args.requests, **out}))


if __name__ == "__main__":
    main()
