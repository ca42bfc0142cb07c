"""Fixtures of the serving tests: a published run and the app on a live loopback server."""
from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from flows.compare import build
from flows.config import PipelineConfig
from flows.evaluate import evaluate_task
from flows.pipeline import champions_stage, publish_stage
from flows.store import join
from tests.datagen import random_bundle


def png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A run with two (untrained, real) models published over real MNIST test digits."""
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
    publish_stage.fn(run, "run-s", records, comp, {}, {})
    champions_stage.fn(PipelineConfig(store=store), run, "run-s", comp)
    return store, data, run


@pytest.fixture(scope="module")
def live(published):
    """The app under a real uvicorn server on a loopback port, in a thread."""
    import socket
    import threading

    from flows.serve import server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = server(published[0], port=port, log_level="warning")
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


