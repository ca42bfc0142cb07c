"""Two runs on one machine, and runs stopped mid-way, as a user meets them: the `imgclf`
console script in subprocesses, each starting its own local Ray."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import psutil
import pytest

from tests.conftest import BIN

pytestmark = pytest.mark.slow


def _env(tmp_path) -> dict:
    env = {**os.environ, "IMGCLF_LOG_DIR": str(tmp_path / "logs")}
    for k in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "IMGCLF_CHILD"):
        env.pop(k, None)
    return env


def test_two_tunings_side_by_side_both_finish(tiny_dataset, tmp_path):
    """Each tuning runs 3 trials one after another, so each needs its placement groups freed
    between trials. With two local Rays on the machine, Train's PlacementGroupCleaner used to
    die ("Found multiple active Ray instances"), a group stayed reserved and the second trial
    never started (seen: both hung past 4 minutes)."""
    store, _ = tiny_dataset
    procs = []
    for seed in (1, 2):
        procs.append(subprocess.Popen(
            [str(BIN / "imgclf"), "-v", "tune", "--store", store, "--model", "bp",
             "--num-samples", "3", "--max-epochs", "1", "--batch-sizes", "32,64",
             "--seed", str(seed)], env=_env(tmp_path), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True))
        time.sleep(4)
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=420)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.send_signal(signal.SIGINT)  # the supervisor stops the run's whole tree
                q.wait(30)
            pytest.fail("a tuning hung with another one beside it")
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-4000:]
        assert "multiple active Ray instances" not in out
        result = [ln for ln in out.splitlines() if ln.startswith('{"name"')]
        assert json.loads(result[-1])["trials"] == 3, out[-3000:]


# A one-worker training is a Tune trial running Lightning itself: Ray names its process after
# the function trainable's actor class.
TRAINING = "ImplicitFunc"


def _cmd(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:  # gone, or a zombie
        return ""


def _ray_descendants(proc: psutil.Process) -> list[psutil.Process]:
    return [p for p in proc.children(recursive=True) if "ray" in _cmd(p).lower()]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_a_training_and_every_ray_process_in_seconds(tiny_dataset, tmp_path,
                                                                   sig):
    store, _ = tiny_dataset
    proc = subprocess.Popen([str(BIN / "imgclf"), "train", "--store", store, "--model", "cnn",
                             "--epochs", "50", "--batch-size", "16"], env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    guard = psutil.Process(proc.pid)
    seen: dict[int, psutil.Process] = {}
    deadline = time.time() + 120
    while time.time() < deadline:  # wait for the training process: the run is under way
        ray_procs = _ray_descendants(guard)
        seen.update({p.pid: p for p in ray_procs})
        if any(TRAINING in _cmd(p) for p in ray_procs):
            break
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("no training process started within 120 s")
    time.sleep(2)
    seen.update({p.pid: p for p in _ray_descendants(guard)})
    started = time.monotonic()
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the run did not stop within 10 s")
    assert time.monotonic() - started < 10
    assert proc.returncode == 128 + sig
    assert "Traceback" not in err
    _, alive = psutil.wait_procs(list(seen.values()), timeout=2)
    assert not alive, [_cmd(p)[:120] for p in alive]
