"""A one-worker training with no Ray cluster to join runs in the caller's process: when that
applies, and how its checkpoints are kept in the store (Ray's CheckpointConfig semantics)."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import ray
import torch
from pydantic import ValidationError

from cluster.config import TrainConfig
from cluster.in_process import METRICS_FILE, StoreSink, saved
from cluster.launcher import fit, runs_here
from cluster.train_worker import CHECKPOINT_FILE
from lightning_modules import metrics as M
from lightning_modules.errors import DataError


def _no_cluster(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr("cluster.connect._recorded_head", lambda: None)
    assert not ray.is_initialized()


def test_which_runs_train_in_process(monkeypatch):
    _no_cluster(monkeypatch)
    assert runs_here(TrainConfig())
    assert not runs_here(TrainConfig(scaling={"workers": 2}))  # DDP needs Ray
    assert not runs_here(TrainConfig(scaling={"in_process": False}))
    assert not runs_here(TrainConfig(scaling={"ray_address": "10.0.0.1:6379"}))
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert not runs_here(TrainConfig())
    assert runs_here(TrainConfig(scaling={"in_process": True}))
    with pytest.raises(ValidationError, match="--in-process trains one worker"):
        TrainConfig(scaling={"in_process": True, "workers": 2})


def _epoch(sink: StoreSink, tmp_path, epoch: int, acc: float) -> None:
    d = tmp_path / f"ckpt{epoch}"
    d.mkdir()
    (d / CHECKPOINT_FILE).write_bytes(b"weights %d" % epoch)
    sink({"epoch": epoch, M.SCORE: acc}, str(d))


def test_store_keeps_the_best_and_the_latest_epochs(tmp_path):
    run = str(tmp_path / "run")
    sink = StoreSink(run, keep=2)
    for epoch, acc in enumerate([0.5, 0.9, 0.7, 0.8, 0.6]):
        _epoch(sink, tmp_path, epoch, acc)
    kept = saved(run)
    # the two best (epochs 1 and 3) and the latest (4), oldest first
    assert [c.metrics["epoch"] for c in kept] == [1, 3, 4]
    assert (tmp_path / "run" / "epoch_0004" / CHECKPOINT_FILE).read_bytes() == b"weights 4"
    # a folder whose metrics were never written (a run stopped mid-save) is not a checkpoint
    (tmp_path / "run" / "epoch_0005").mkdir()
    (tmp_path / "run" / "epoch_0005" / CHECKPOINT_FILE).write_bytes(b"half")
    assert [c.metrics["epoch"] for c in saved(run)] == [1, 3, 4]
    assert json.loads((tmp_path / "run" / "epoch_0001" / METRICS_FILE).read_text())[M.SCORE] \
        == 0.9


def test_in_process_fit_resumes_and_returns_the_best_epoch(tiny_dataset, monkeypatch):
    _no_cluster(monkeypatch)
    store, uri = tiny_dataset
    cfg = TrainConfig(store=store, epochs=3, model={"family": "bp", "preset": "small"},
                      optim={"batch_size": 32})
    first = fit(cfg, uri, "resume-me")
    assert not ray.is_initialized()  # no Ray was started for it
    assert [h["epoch"] for h in first.history] == [1, 2, 3]
    best_acc = max(h[M.SCORE] for h in first.history)
    assert first.metrics[M.SCORE] == pytest.approx(best_acc)
    # a finished run is not trained again: same weights, same history
    again = fit(cfg, uri, "resume-me")
    assert again.history == first.history
    assert all((again.state[k] == v).all() for k, v in first.state.items())
    # a run stopped before its last epoch was saved carries on from the latest one
    run = Path(store, "ray", "resume-me", "in_process")
    shutil.rmtree(run / "epoch_0002")
    done = int(saved(str(run))[-1].metrics["epoch"]) + 1  # epochs its latest save covers
    resumed = fit(cfg, uri, "resume-me")
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    # the saved epochs were not trained again: their rows, timings included, are the same
    assert resumed.history[:done] == first.history[:done]


def test_a_training_past_its_deadline_stops_after_its_first_epoch(tiny_dataset, monkeypatch,
                                                                 caplog):
    _no_cluster(monkeypatch)
    store, uri = tiny_dataset
    cfg = TrainConfig(store=store, epochs=4, model={"family": "bp", "preset": "small"},
                      optim={"batch_size": 32}, scaling={"deadline": time.time() - 120})
    with caplog.at_level("WARNING"):
        out = fit(cfg, uri, "late")
    assert [h["epoch"] for h in out.history] == [1]  # one whole epoch, validated
    assert out.metrics[M.SCORE] > 0
    assert "deadline reached: training stops after 1 of 4 epoch(s)" in caplog.text
    # Just past it, with seconds of epochs left: they finish (within the minute's grace).
    just = cfg.model_copy(update={"scaling": cfg.scaling.model_copy(
        update={"deadline": time.time() - 1})})
    assert [h["epoch"] for h in fit(just, uri, "just-late").history] == [1, 2, 3, 4]


class _Planted:
    """What someone with write access to the store could plant: a pickle that runs code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_planted_checkpoint_is_refused_not_run(tiny_dataset, monkeypatch, tmp_path):
    _no_cluster(monkeypatch)
    store, uri = tiny_dataset
    cfg = TrainConfig(store=store, epochs=2, model={"family": "bp", "preset": "small"},
                      optim={"batch_size": 32})
    fit(cfg.model_copy(update={"epochs": 1}), uri, "planted")
    ckpt = next(Path(store, "ray", "planted", "in_process").glob(f"epoch_*/{CHECKPOINT_FILE}"))
    marker = tmp_path / "ran"
    torch.save({"state_dict": _Planted(str(marker))}, ckpt)
    with pytest.raises(DataError, match="not a checkpoint of plain weights"):
        fit(cfg, uri, "planted")
    assert not marker.exists(), "the planted pickle ran"


def test_a_streamed_training_learns_as_the_held_one_does(tiny_dataset, monkeypatch, tmp_path):
    """The same seeded run with its training images held and streamed from the shards: the
    same batches in the same order, so the same weights and validation accuracy."""
    _no_cluster(monkeypatch)
    store, uri = tiny_dataset
    fits = []
    for stream in (False, True):
        cfg = TrainConfig(dataset="mnist", store=store, epochs=1, model={"family": "bp"},
                          compute={"stream_data": stream, "shard_cache": str(tmp_path / "c")})
        fits.append(fit(cfg, uri, f"stream-{stream}"))
    held, streamed = fits
    assert held.metrics[M.VAL_ACC] == streamed.metrics[M.VAL_ACC]
    assert all(torch.equal(v, streamed.state[k]) for k, v in held.state.items())
    assert any(not torch.equal(v, 0 * v) for v in held.state.values())
