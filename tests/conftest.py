"""Shared fixtures: the real offline datasets, and a real S3 endpoint (moto) on loopback."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist each worker gets a Ray temp dir of its own, as two machines would: a
    head that one worker's test starts with `ray start` is not the head another worker's plain
    run finds recorded on the machine (and joins)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        config.ray_tmpdir = tempfile.mkdtemp(prefix=f"r{worker}-", dir="/tmp")  # type: ignore
        os.environ["RAY_TMPDIR"] = config.ray_tmpdir  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    """The worker's Ray temp dir goes with it, after the Ray a test left in this process ended
    (it would write there again at exit)."""
    if getattr(config, "ray_tmpdir", None):
        _end_this_process_ray()
        shutil.rmtree(config.ray_tmpdir, ignore_errors=True)


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
    _end_this_process_ray()  # its workers were started without the endpoint's environment
    os.environ.update(env)
    yield url
    server.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _end_this_process_ray() -> None:
    """A Ray an earlier test started in this process (kept for the next tests) ends here: its
    workers hold the environment of when it started (a run of this test's would reuse it)."""
    import ray

    if ray.is_initialized():
        from cluster.connect import disconnect

        disconnect()


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


BIN = Path(sys.executable).parent


def stop_process_tree(proc: subprocess.Popen, timeout: float = 30) -> None:
    """End a process this test started and everything under it (only those, by their ids)."""
    import psutil

    try:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    proc.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(tree, timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:  # went between the wait and the kill
            pass
    psutil.wait_procs(alive, timeout=10)


def start_ray_head(tmp: Path, token: bool = True, auth_mode: str | None = None,
                   cpus: int = 2) -> tuple[str, dict, subprocess.Popen]:
    """`ray start --head --block` as a user runs it, in a HOME of its own that holds
    ~/.ray/auth_token (as on any machine that has run Ray) unless `token` is False; its own
    temp dir, so that no other test's plain ray.init() joins it. Returns (address, the client
    environment with that HOME and RAY_ADDRESS, the process)."""
    home = tmp / "home"
    (home / ".ray").mkdir(parents=True, exist_ok=True)
    if token:
        (home / ".ray" / "auth_token").write_text(uuid.uuid4().hex + uuid.uuid4().hex)
    port, dash = _free_port(), _free_port()
    env = {**os.environ, "HOME": str(home)}
    for k in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_API_SERVER_ADDRESS", "IMGCLF_CHILD"):
        env.pop(k, None)
    head_env = {**env, **({"RAY_AUTH_MODE": auth_mode} if auth_mode else {})}
    # A short temp dir: Ray's socket paths under pytest's tmp_path exceed AF_UNIX's 107 bytes.
    ray_tmp = tempfile.mkdtemp(prefix="rayh-", dir="/tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    log = open(tmp / "ray-head.log", "w")
    proc = subprocess.Popen([str(BIN / "ray"), "start", "--head", "--block", "--port", str(port),
                             "--num-cpus", str(cpus), "--dashboard-port", str(dash),
                             "--temp-dir", ray_tmp], env=head_env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    proc.ray_tmp = ray_tmp  # type: ignore[attr-defined]  (removed by stop_ray_head)
    address = f"127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        if "will now block forever" in (tmp / "ray-head.log").read_text():
            return address, {**env, "RAY_ADDRESS": address}, proc
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    stop_ray_head(proc)
    pytest.fail(f"ray start --head failed: {(tmp / 'ray-head.log').read_text()[-2000:]}")


def stop_ray_head(proc: subprocess.Popen) -> None:
    # `ray start --block` ends its processes on SIGTERM; workers that outwait it are killed.
    stop_process_tree(proc, timeout=4)
    shutil.rmtree(proc.ray_tmp, ignore_errors=True)  # type: ignore[attr-defined]


@pytest.fixture
def ray_head(tmp_path):
    """A token-auth head from `ray start --head` (see start_ray_head), stopped afterwards."""
    address, env, proc = start_ray_head(tmp_path)
    yield address, env
    stop_ray_head(proc)
