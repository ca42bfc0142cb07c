"""The CLI against a Ray cluster the way a user brings one: `ray start --head` (token auth on,
as Ray 2.60 makes it where ~/.ray/auth_token exists, or off), then `RAY_ADDRESS=... imgclf`.
Each run is the `imgclf` console script in a subprocess; only the processes the tests started
are ended (tests/conftest.py:stop_process_tree)."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import BIN, start_ray_head, stop_ray_head

pytestmark = pytest.mark.slow


def imgclf(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "imgclf"), *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def _one_line_error(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("imgclf ")]
    assert len(lines) == 1, out.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """One token-auth head for the module, as a user keeps one running: each test joins it in
    turn, after the runs of the tests before (stopped after the last)."""
    address, env, proc = start_ray_head(tmp_path_factory.mktemp("head"))
    yield address, env
    stop_ray_head(proc)


def test_train_and_tune_join_a_token_auth_head(head, tiny_dataset):
    _, env = head
    store, _ = tiny_dataset
    out = imgclf(env, "train", "--store", store, "--model", "bp", "--batch-size", "64")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["cached"] is False and res["metrics"]["val/acc"] > 0
    # On a cluster a one-worker training is a Ray task training in its process (its epochs
    # saved in the store), not a Tune experiment.
    run = Path(store, "ray", res["run_name"])
    assert list(run.glob("in_process/epoch_*/metrics.json")), sorted(run.rglob("*"))[:20]
    out = imgclf(env, "tune", "--store", store, "--model", "bp", "--num-samples", "1",
                 "--max-epochs", "1", "--batch-sizes", "64")
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])["trials"] == 1


def test_missing_token_is_one_line_saying_what_to_set(head, tiny_dataset, tmp_path):
    _, env = head
    store, _ = tiny_dataset
    no_token = {**env, "HOME": str(tmp_path / "elsewhere")}
    started = time.monotonic()
    line = _one_line_error(imgclf(no_token, "train", "--store", store, "--model", "bp"))
    assert time.monotonic() - started < 60
    assert "requires token authentication" in line and "RAY_AUTH_TOKEN" in line


def test_unplaceable_workers_fail_in_bounded_time(head, tiny_dataset):
    """3 one-CPU workers on a 2-CPU cluster can never be placed: Ray's default would retry
    the worker-group start forever; the run fails after --start-timeout-s with its reason."""
    _, env = head
    store, _ = tiny_dataset
    started = time.monotonic()
    line = _one_line_error(imgclf(env, "train", "--store", store, "--model", "bp",
                                  "--workers", "3", "--start-timeout-s", "10"))
    assert time.monotonic() - started < 90
    assert "did not start within 10 s" in line and "3 worker(s)" in line


def test_train_joins_a_head_without_auth(tmp_path, tiny_dataset):
    """A head started with RAY_AUTH_MODE=disabled, the client holding a token: the token is
    not forced on it (a token-mode client's Train controller died on such a head)."""
    store, _ = tiny_dataset
    _, env, proc = start_ray_head(tmp_path / "open", token=True, auth_mode="disabled")
    try:
        out = imgclf(env, "train", "--store", store, "--model", "bp", "--batch-size", "64")
        assert out.returncode == 0, out.stderr[-3000:]
    finally:
        stop_ray_head(proc)
