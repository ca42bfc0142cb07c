"""Ray Tune on a local Ray: ASHA stops weak trials, the best trial wins, an interrupted tune
resumes without re-running finished trials, and bad budgets fail before any trial starts."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from pydantic import ValidationError
from ray import tune

from cluster.config import TuneConfig
from cluster.connect import connect, disconnect
from cluster.launcher import storage
from cluster.tuner import base_point, search_seed
from flows.tune import tune_model as run_tune
from lightning_modules import metrics as M
from lightning_modules.errors import UserError

BASE = {"dataset": "mnist", "max_train_samples": 300, "model": {"family": "bp"}}
SPACE = {"lr_min": 1e-5, "lr_max": 0.3, "batch_sizes": [32], "presets": ["small"]}


def _cfg(store, samples=4, name=None):
    return TuneConfig(base={**BASE, "store": store}, space=SPACE,
                      tune={"num_samples": samples, "max_epochs": 2, "tune_name": name})


@pytest.mark.slow  # real Ray Tune runs
def test_asha_stops_early_and_the_best_trial_wins(local_ray):
    out = run_tune(_cfg(local_ray, name="asha"))
    rows = out.trials
    assert len(rows) == 4 and all(r["error"] is None for r in rows)
    assert any(r["stopped_early"] for r in rows), rows
    # The base config's own levers (those the space allows) are one of the trials; each trial
    # measured its speed.
    cfg = _cfg(local_ray)
    point = base_point(cfg.base, cfg.space)
    assert {"lr", "activation", "dropout"} <= set(point) and "batch_size" not in point
    assert any(point.items() <= r["params"].items() for r in rows), rows
    assert all(r["img_per_s"] > 0 for r in rows), rows
    top = max(rows, key=lambda r: r[M.SCORE])
    assert out.best.params == top["params"]
    # Tune's own record agrees: the best val/acc any trial reached (scope="all"), not its last.
    path, fs = storage(local_ray)
    analysis = tune.ExperimentAnalysis(f"{path}/asha", storage_filesystem=fs)
    assert analysis.get_best_config(M.SCORE, "max", scope="all")["point"]["params"] == top["params"]
    saved = json.loads(Path(out.uri, "best.json").read_text())
    assert saved["train_config"]["optim"]["lr"] == top["params"]["lr"]


@pytest.mark.slow  # real Ray Tune runs
def test_interrupted_tune_resumes_without_rerunning_finished_trials(local_ray, tmp_path):
    # Trials of a second or two (a trial reuses the previous one's process, so bp on 300
    # images finished all four between two polls), the driver killed mid-search.
    cfg = TuneConfig(base={**BASE, "store": local_ray, "max_train_samples": 2000,
                           "model": {"family": "cnn"}}, space=SPACE,
                     tune={"num_samples": 4, "max_epochs": 2, "tune_name": "resume"})
    trials_dir = Path(local_ray, "tuning/mnist/cnn/resume/trials")
    args = [sys.executable, "-m", "flows.cli", "tune", "--store", local_ray, "--dataset", "mnist",
            "--max-train-samples", "2000", "--model", "cnn", "--lr-min", "1e-5", "--lr-max",
            "0.3", "--batch-sizes", "32", "--presets", "small", "--num-samples", "4",
            "--max-epochs", "2", "--tune-name", "resume"]
    # The driver starts its own local Ray; both die together, as when a head node goes down.
    disconnect()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(trials_dir.glob("*.json"))) < 2:
        time.sleep(0.2)
    tree = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its Ray die mid-search
    proc.wait()
    for p in tree:  # any Ray process of that driver's that left its group (never `ray stop`:
        try:        # it would end every Ray on the machine)
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(tree, timeout=30)
    connect(None)
    finished_before = {p.name.split("-")[0] for p in trials_dir.glob("*.json")}
    assert 2 <= len(finished_before) < 4
    out = run_tune(cfg)
    files = [p.name.split("-")[0] for p in trials_dir.glob("*.json")]
    assert len(out.trials) == 4
    assert sorted(files) == sorted(set(files)), "a finished trial ran again"
    assert finished_before < set(files)


@pytest.mark.parametrize("space,match", [
    ({"lr_min": 0.1, "lr_max": 0.01}, "range is empty or inverted"),
    ({"activations": ["relu", "swish"]}, "Input should be 'relu'"),
    ({"dropout_min": 0.5, "dropout_max": 0.1}, "dropout range is inverted"),
    ({"batch_sizes": []}, "at least 1 item"),
])
def test_bad_search_space(space, match):
    with pytest.raises(ValidationError, match=match):
        TuneConfig(space=space)


@pytest.mark.slow  # real Ray Tune runs
def test_zero_budget_and_unplaceable_concurrency(local_ray):
    with pytest.raises(ValidationError, match="greater than 0"):
        TuneConfig(tune={"num_samples": 0})
    with pytest.raises(UserError, match="--max-concurrent 3 trials .* but the cluster has 2"):
        run_tune(TuneConfig(base={**BASE, "store": local_ray, "scaling": {"cpus_per_worker": 1}},
                            space=SPACE, tune={"max_concurrent": 3}))
    with pytest.raises(UserError, match="--batch-size 512 is larger than the training set"):
        run_tune(TuneConfig(base={**BASE, "store": local_ray}, space={"batch_sizes": [32, 512]}))
    with pytest.raises(UserError, match="are not structures of 'bp'"):
        run_tune(TuneConfig(base={**BASE, "store": local_ray}, space={"presets": ["wide"]}))


def test_each_branch_samples_its_own_configs():
    seeds = {search_seed(TuneConfig(base={**BASE, "dataset": ds, "model": {"family": f}}))
             for ds in ("mnist", "fashion-mnist") for f in ("bp", "dnn", "cnn", "dcnn")}
    assert len(seeds) == 8
