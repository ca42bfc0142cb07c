"""Fixtures of the serving tests: a published run and the app on a live loopback server."""
from __future__ import annotations

import subprocess
import time

import pytest

from bench.fixtures import png  # noqa: E402,F401  (the serving tests' PNG maker)
from flows.compare import build
from flows.evaluate import evaluate_task
from flows.publish import champions_task, publish_task
from lightning_modules.store import join
from tests.datagen import random_bundle


@pytest.fixture(scope="session")
def published(tmp_path_factory):
    """A run with two (untrained, real) models published over real MNIST test digits, shared by
    the serving tests (a test that changes a store changes its own copy)."""
    from flows.config import PrepConfig
    from flows.prep.build import prepare
    from tests.conftest import shared_dataset
    from tests.datagen import idx_subset

    tmp = tmp_path_factory.mktemp("serve")
    store = str(tmp / "store")
    src = idx_subset(shared_dataset("mnist"), tmp / "mnist", 300, 100)
    data = prepare(PrepConfig(dataset="mnist", source=str(src), store=store)).uri
    records = []
    for fam in ("bp", "cnn"):
        bundle = random_bundle(store, data, fam, run=f"{fam}-r")
        records.append({"dataset": "mnist", "family": fam, "bundles": [bundle],
                        "metrics_uris": [evaluate_task.fn(bundle)], "error": None})
    run = join(store, "runs", "run-s")
    comp = build("run-s", records, ["bp", "cnn"], {}, {}, [])
    publish_task.fn(run, "run-s", records, comp, {}, {})
    champions_task.fn(store, 0.0, run, "run-s", comp)
    return store, data, run


def start_server(store: str, *options: str) -> tuple[subprocess.Popen, str]:
    """`imgclf serve` as a user starts it, on a free loopback port; returns (process, URL)
    once the page answers."""
    import httpx

    from tests.conftest import BIN, _free_port

    port = _free_port()
    proc = subprocess.Popen([str(BIN / "imgclf"), "serve", "--store", store, "--port", str(port),
                             *options], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"imgclf serve exited {proc.returncode}: {proc.stdout.read()}")
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("imgclf serve did not answer within 60 s")


@pytest.fixture(scope="session")
def live(published):
    """`imgclf serve` (Granian) over the published run, on a loopback port."""
    from tests.conftest import stop_process_tree

    proc, url = start_server(published[0])
    yield url
    stop_process_tree(proc)


