"""Shared fixtures: the real offline datasets, and a real S3 endpoint (moto) on loopback."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def shared_dataset(name: str) -> Path:
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"offline dataset copy {path} is not on this machine")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server on 127.0.0.1, with the environment pointing s3fs/boto at it."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    env = {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield url
    server.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_endpoint, request):
    """A fresh bucket per test; returns its s3:// URL."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    name = "t-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    fs.mkdir(name)
    yield f"s3://{name}"
    fs.rm(name, recursive=True)


@pytest.fixture
def tiny_dataset(tmp_path):
    """A prepared MNIST-shaped dataset (generated, 300 train images) in a tmp store."""
    from flows.config import PrepConfig
    from flows.prep.build import prepare
    from tests.datagen import write_idx_set

    src = write_idx_set(tmp_path / "raw", n_train=300, n_test=60)
    res = prepare(PrepConfig(dataset="mnist", source=str(src), store=str(tmp_path / "store")))
    return str(tmp_path / "store"), res.uri


@pytest.fixture(scope="session")
def prefect_harness():
    """Prefect's temporary server (real API, SQLite), shared by the flow tests."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield
