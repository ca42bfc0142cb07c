"""Real Ray Train runs on a local Ray: 2-worker DDP, checkpoints, bundle, resume after a crash."""
from __future__ import annotations

import glob
import json
import time

import pytest
import ray
import torch

from cluster.config import TrainConfig
from flows.evaluate import evaluate_bundle
from flows.train import train_model as train
from lightning_modules import metrics as M
from lightning_modules.bundle import load_bundle
from lightning_modules.datamodule import PreparedData
from tests.cluster.faults import inject_fail_once

pytestmark = pytest.mark.slow  # real Ray Train runs


def _cfg(store, **kw):
    base = dict(dataset="mnist", store=store, epochs=1, max_train_samples=400,
                model={"family": "cnn", "widths": [8, 16, 64]},
                optim={"batch_size": 16, "lr": 3e-3}, scaling={"workers": 2})
    base.update(kw)
    return TrainConfig(**base)


def test_two_worker_run_publishes_a_working_bundle(local_ray):
    mnist_store = local_ray
    out = train(_cfg(local_ray))
    assert not out.cached
    assert out.info["metrics"]["ddp/world_size"] == 2.0
    assert glob.glob(f"{mnist_store}/ray/{out.run_name}/checkpoint_*/checkpoint.ckpt")
    pred = load_bundle(out.bundle_uri)
    test = PreparedData(pred.info["data_uri"], batch_size=1).split("test")
    acc = float((pred.probs(test.x[:2000]).argmax(1) == test.y[:2000]).float().mean())
    assert acc > 0.3  # 400 images, one epoch, a tiny net: well above chance (0.1)
    m = evaluate_bundle(out.bundle_uri)
    assert sum(map(sum, m["confusion"])) == 10000 and m["params"] > 0 and m["img_per_s"] > 0
    assert json.loads(open(f"{out.bundle_uri}/metrics.json").read())[M.TEST_ACC] == m[M.TEST_ACC]
    again = train(_cfg(local_ray))
    assert again.cached and again.bundle_uri == out.bundle_uri


def test_worker_death_resumes_from_the_checkpoint(local_ray, tmp_path, monkeypatch):
    mnist_store = local_ray
    marker = str(tmp_path / "died")
    cfg = _cfg(mnist_store, epochs=2, seed=7)
    inject_fail_once(monkeypatch, marker)
    out = train(cfg)
    crash_step = int(open(marker).read())
    starts = [int(s) for s in open(marker + ".starts").read().split()]
    steps_per_epoch = 400 // 2 // 16 + (1 if (400 // 2) % 16 else 0)
    assert starts == [0, steps_per_epoch]  # the second attempt began at epoch 1's checkpoint
    assert crash_step - starts[1] <= steps_per_epoch  # wasted at most one checkpoint interval
    assert load_bundle(out.bundle_uri).probs(torch.zeros(1, 1, 28, 28, dtype=torch.uint8)).shape == (1, 10)
    assert _resources_settle()  # no worker, placement group or CPU leaked


def _resources_settle(timeout: float = 15.0) -> bool:
    """CPU/GPU/memory all available again (the object store may keep small cached objects)."""
    keys = ("CPU", "GPU", "memory")
    deadline = time.time() + timeout
    while time.time() < deadline:
        total, free = ray.cluster_resources(), ray.available_resources()
        if all(total.get(k, 0) == free.get(k, 0) for k in keys):
            return True
        time.sleep(0.5)
    return False
