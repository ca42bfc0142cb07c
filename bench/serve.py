"""Serving benchmark: single-digit POST /predict latency (p50/p99) and throughput per family,
over real HTTP on loopback (uvicorn), on CPU. Prints JSON. Goal: p99 ≤ 20 ms for `cnn`.

    python bench/serve.py [--requests 300] [--concurrency 4]

Models are real bundles of each family's default structure with untrained weights (latency
does not depend on the weight values), published into a temporary store as the pipeline does."""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.compare import build  # noqa: E402
from flows.config import PipelineConfig, PrepConfig  # noqa: E402
from flows.evaluate import evaluate_task  # noqa: E402
from flows.pipeline import champions_stage, publish_stage  # noqa: E402
from flows.prep.build import prepare  # noqa: E402
from flows.serve import server  # noqa: E402
from flows.store import join, read_npy  # noqa: E402
from tests.datagen import idx_subset, random_bundle  # noqa: E402
from tests.flows.conftest import png  # noqa: E402

FAMILIES = ["bp", "dnn", "cnn", "dcnn"]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mnist"


def publish(tmp: Path) -> tuple[str, str]:
    store = str(tmp / "store")
    src = idx_subset(SHARED, tmp / "mnist", 300, 100)
    data = prepare(PrepConfig(dataset="mnist", source=str(src), store=store)).uri
    records = []
    for fam in FAMILIES:
        b = random_bundle(store, data, fam, run=f"{fam}-bench")
        records.append({"dataset": "mnist", "family": fam, "bundles": [b],
                        "metrics_uris": [evaluate_task.fn(b)], "error": None})
    run = join(store, "runs", "run-bench")
    comp = build("run-bench", records, FAMILIES, {}, {}, [])
    publish_stage.fn(run, "run-bench", records, comp, {}, {})
    champions_stage.fn(PipelineConfig(store=store), run, "run-bench", comp)
    return store, data


def measure(url: str, body: bytes, requests: int, concurrency: int) -> dict:
    with httpx.Client(timeout=30) as c:
        for _ in range(10):  # warm-up: model load, first allocations
            c.post(url, content=body, headers={"content-type": "image/png"})
        lat = []
        for _ in range(requests):  # one at a time: the latency a single user sees
            t = time.perf_counter()
            r = c.post(url, content=body, headers={"content-type": "image/png"})
            lat.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200, r.text

    shared = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=concurrency))

    def one(_: int) -> int:  # one keep-alive client, `concurrency` requests in flight
        return shared.post(url, content=body, headers={"content-type": "image/png"}).status_code
    start = time.perf_counter()
    with cf.ThreadPoolExecutor(concurrency) as pool:
        codes = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - start
    shared.close()
    return {"p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "throughput_rps": round(requests / wall, 1), "concurrency": concurrency,
            "errors": sum(c != 200 for c in codes)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store, data = publish(Path(tmp))
        digit = png(read_npy(join(data, "test_x.npy"))[0, 0])
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        srv = server(store, port=port, log_level="warning")
        threading.Thread(target=srv.run, daemon=True).start()
        while not srv.started:
            time.sleep(0.1)
        out = {fam: measure(f"http://127.0.0.1:{port}/predict?model=mnist/{fam}", digit,
                            args.requests, args.concurrency) for fam in FAMILIES}
        srv.should_exit = True
    print(json.dumps({"requests": args.requests, "results": out}, indent=2))


if __name__ == "__main__":
    main()
