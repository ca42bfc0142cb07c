"""Two runs on one machine, and runs stopped mid-way, as a user meets them: the `imgclf`
console script in subprocesses, each starting its own local Ray (or, for a one-worker training
with no cluster to join, training in its own process)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from lightning_modules.bundle import INFO
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


# A one-worker training on Ray is a Ray task running Lightning itself: Ray names its worker
# process after the task's function while it runs.
TRAINING = "ray::train_model"


def _cmd(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:  # gone, or a zombie
        return ""


def _ray_descendants(proc: psutil.Process) -> list[psutil.Process]:
    return [p for p in proc.children(recursive=True) if "ray" in _cmd(p).lower()]


# The guard (flows/supervise.py) turns SIGTERM and SIGHUP into the same stop as Ctrl-C; they
# are checked on an in-process training below, Ctrl-C and SIGKILL (the guard gone) on Ray.
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_a_signal_stops_a_training_and_every_ray_process_in_seconds(tiny_dataset, tmp_path,
                                                                   sig):
    store, _ = tiny_dataset
    proc = subprocess.Popen([str(BIN / "imgclf"), "train", "--store", store, "--model", "cnn",
                             "--epochs", "50", "--batch-size", "16", "--no-in-process"],
                            env=_env(tmp_path), start_new_session=True,
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
    seen.update({p.pid: p for p in guard.children(recursive=True)})
    started = time.monotonic()
    os.killpg(proc.pid, sig)  # the command's process group, as a terminal or `kill -- -PGID`
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the run did not stop within 10 s")
    assert time.monotonic() - started < 10
    if sig == signal.SIGKILL:  # the guard died at once; what it started ends by itself
        assert proc.returncode == -sig
    else:
        assert proc.returncode == 128 + sig
        assert "Traceback" not in err
    _, alive = psutil.wait_procs(list(seen.values()), timeout=10)
    left = [_cmd(p)[:120] for p in alive]
    for p in alive:  # ours: end them before failing, so no run outlives the test
        p.kill()
    assert not left, left


def _epochs_saved(store: str) -> list[str]:
    return sorted(p.parent.name for p in Path(store, "ray").glob("*/in_process/*/metrics.json"))


def test_ctrl_c_then_a_rerun_resumes_an_in_process_training(tiny_dataset, tmp_path):
    """No cluster to join: the training runs in the command's process, saves every epoch in the
    store, stops on Ctrl-C without a traceback, and the same command resumes after the last
    saved epoch instead of starting again."""
    store, _ = tiny_dataset
    cmd = [str(BIN / "imgclf"), "train", "--store", store, "--model", "bp", "--epochs", "30",
           "--batch-size", "16"]
    proc = subprocess.Popen(cmd, env=_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while len(_epochs_saved(store)) < 2 and time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.1)
    assert _epochs_saved(store), "no epoch saved within 120 s"
    assert not [p for p in psutil.Process(proc.pid).children(recursive=True)
                if "ray" in _cmd(p).lower()], "an in-process training started Ray"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGINT
    assert "Traceback" not in err
    saved = _epochs_saved(store)
    assert saved[-1] != "epoch_0029", "the run finished before it was stopped"

    out = subprocess.run(cmd, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    logs = "".join(p.read_text() for p in (tmp_path / "logs").glob("train-*.log"))
    resumed = [ln for ln in logs.splitlines() if "resuming" in ln]
    assert resumed and resumed[-1].endswith(saved[-1]), logs[-3000:]
    bundle = Path(json.loads(out.stdout.strip().splitlines()[-1])["bundle"])
    info = json.loads((bundle / INFO).read_text())
    assert [h["epoch"] for h in info["history"]] == list(range(1, 31))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_stop_a_training_like_ctrl_c(tiny_dataset, tmp_path, sig):
    """`kill` and a closed terminal: the run stops within seconds, without a traceback, and
    leaves no process of its own behind."""
    store, _ = tiny_dataset
    proc = subprocess.Popen([str(BIN / "imgclf"), "train", "--store", store, "--model", "bp",
                             "--epochs", "60", "--batch-size", "16"], env=_env(tmp_path),
                            start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not _epochs_saved(store) and time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.1)
    tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    assert len(tree) > 1, "the guard started no child"
    started = time.monotonic()
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - started < 10
    assert proc.returncode == 128 + sig and "Traceback" not in err, err[-3000:]
    _, alive = psutil.wait_procs(tree[1:], timeout=10)
    left = [_cmd(p)[:120] for p in alive]
    for p in alive:
        p.kill()
    assert not left, left
