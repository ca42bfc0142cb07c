"""One worker trained in the process that runs the stage: `imgclf train`'s own when there is no
Ray cluster to join, or a Ray task's that holds the run's resources (a flow's training,
cluster/launcher.py:train_on_cluster). Starting a private Ray, or a Tune experiment and a trial
process, for one process's work cost more than an epoch (README, "One training, end to end").
Ray Train V2's local mode (`num_workers=0`) runs the same way but keeps only the last
checkpoint in memory; this keeps them in the store as a Ray run does, so that an interrupted
run resumes from its latest epoch and the bundle gets the best one."""
from __future__ import annotations

import json
import logging
import os
import pickle
import tempfile
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Iterator


from cluster.config import TrainConfig
from cluster.train_worker import CHECKPOINT_FILE, device_type, fit_one
from lightning_modules import metrics as M
from lightning_modules import layout
from lightning_modules.errors import DataError
from lightning_modules.store import (
    filesystem,
    is_local,
    join,
    read_json,
    remove_quietly,
    write_bytes,
)

log = logging.getLogger(__name__)
METRICS_FILE = layout.METRICS  # written last: an epoch folder without it is incomplete


@dataclass
class Saved:
    """One epoch's checkpoint in the store."""

    uri: str  # the folder holding CHECKPOINT_FILE and METRICS_FILE
    metrics: dict[str, float]


def saved(run_uri: str) -> list[Saved]:
    """The run's complete epoch checkpoints, oldest first."""
    fs, path = filesystem(run_uri)
    if not fs.exists(path):
        return []
    out = []
    for d in sorted(fs.ls(path, detail=False)):
        uri = join(run_uri, os.path.basename(d.rstrip("/")))
        metrics = read_json(join(uri, METRICS_FILE))
        if metrics is not None:
            out.append(Saved(uri, metrics))
    return out


def best_of(checkpoints: list[Saved]) -> Saved:
    return max(checkpoints, key=lambda c: c.metrics.get(M.SCORE, -1.0))


class StoreSink:
    """Each epoch's checkpoint to `<run_uri>/epoch_NNNN/`; keeps the latest and the best
    `keep` by score (Ray's CheckpointConfig semantics)."""

    def __init__(self, run_uri: str, keep: int) -> None:
        self.run_uri, self.keep = run_uri, keep

    def __call__(self, metrics: dict[str, float], ckpt_dir: str) -> None:
        uri = join(self.run_uri, f"epoch_{int(metrics['epoch']):04d}")
        with open(os.path.join(ckpt_dir, CHECKPOINT_FILE), "rb") as f:
            write_bytes(join(uri, CHECKPOINT_FILE), f.read())
        write_bytes(join(uri, METRICS_FILE), json.dumps(metrics).encode())
        self._prune()

    def _prune(self) -> None:
        runs = saved(self.run_uri)
        ranked = sorted(runs, key=lambda c: c.metrics.get(M.SCORE, -1.0), reverse=True)
        kept = {c.uri for c in ranked[: self.keep]} | {runs[-1].uri}
        for c in runs:
            if c.uri not in kept:  # its metrics first: a folder half removed is not listed
                remove_quietly(join(c.uri, METRICS_FILE)) and remove_quietly(c.uri)


@contextmanager
def local_checkpoint(uri: str) -> Iterator[str]:
    """A local path to the checkpoint file of an epoch folder (an s3 one copied down for the
    block's duration)."""
    fs, path = filesystem(join(uri, CHECKPOINT_FILE))
    if is_local(uri):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="imgclf-ckpt-") as d:
        local = os.path.join(d, CHECKPOINT_FILE)
        fs.get_file(path, local)
        yield local


def fit_here(cfg: TrainConfig, data_uri: str, run_uri: str, launched_at: float,
             threads: int) -> tuple[Saved, Saved]:
    """Train in this process, resuming from the run's latest checkpoint; (best, latest)."""
    before = saved(run_uri)
    if before and before[-1].metrics.get("epoch", -1) + 1 >= cfg.epochs:
        log.info("%s: every epoch trained already", run_uri)
        return best_of(before), before[-1]
    # --no-use-gpu keeps a GPU of this machine out of it (Ray would not make it visible).
    device = "cpu" if cfg.scaling.use_gpu is False else device_type()
    if before:
        log.info("resuming %s from %s", run_uri, before[-1].uri)
    with local_checkpoint(before[-1].uri) if before else nullcontext() as ckpt:
        try:
            fit_one(cfg, data_uri, threads, launched_at,
                    StoreSink(run_uri, cfg.scaling.num_to_keep), device=device, ckpt=ckpt)
        except pickle.UnpicklingError:
            raise DataError(f"{before[-1].uri}/{CHECKPOINT_FILE}: not a checkpoint of plain "
                            "weights (refused to load it); remove that epoch folder to train "
                            "it again") from None
    after = saved(run_uri)
    return best_of(after), after[-1]
