"""Launch a Ray Train run for a TrainConfig and hand back what it produced (the best
checkpoint's weights and metrics, the epoch history). Naming, caching and publishing the
bundle are the train stage's (flows/train.py)."""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar

import pyarrow.fs
import ray
import torch
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from cluster.config import TrainConfig
from cluster.connect import cluster_to_join, connect, on_cluster
from cluster.in_process import fit_here, local_checkpoint
from cluster.placement import check_cluster, explain_failure, wait_until_placeable
from cluster.ray_compat import set_driver_setting
from cluster.train_worker import (
    CHECKPOINT_FILE,
    FIT_S,
    STARTUP_S,
    tracked_run,
    train_loop_per_worker,
)
from lightning_modules import metrics as M
from lightning_modules.bundle import load_checkpoint, net_state_from_checkpoint
from lightning_modules.errors import UserError
from lightning_modules.history import history_from_checkpoint
from lightning_modules.layout import ray_storage
from lightning_modules.nets import FAMILIES
from lightning_modules.store import filesystem, is_local, join

log = logging.getLogger(__name__)
# Read by Ray Train V2 (ray/train/v2/_internal/constants.py), passed on to its controller.
START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"


@dataclass
class Fitted:
    """What one training run produced: the best checkpoint's network weights and metrics."""

    state: dict[str, torch.Tensor]
    metrics: dict[str, float]
    history: list[dict[str, float]]
    checkpoint: str
    seconds: float
    workers: int
    wall_seconds: float
    steps_span: Optional[tuple[float, float]]  # (first batch, last epoch's end), epoch seconds


def storage(store: str) -> tuple[str, Optional[pyarrow.fs.FileSystem]]:
    """Ray's storage_path (and filesystem) for checkpoints: `<store>/ray`, s3 through fsspec."""
    url = ray_storage(store)
    if is_local(url):
        return url, None
    fs, path = filesystem(url)
    return path, pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs))


def scaling(cfg: TrainConfig) -> tuple[ScalingConfig, int]:
    """ScalingConfig plus torch threads per worker, from the config and the cluster's resources."""
    res = ray.cluster_resources()
    s = cfg.scaling
    use_gpu = s.use_gpu if s.use_gpu is not None else res.get("GPU", 0) >= 1
    # By default the cluster's CPUs shared out, but never more than one node has.
    biggest = max([n.get("Resources", {}).get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
                  or [1])
    cpus = s.cpus_per_worker or max(1, min(int(res.get("CPU", 1)) // s.workers, int(biggest)))
    return ScalingConfig(num_workers=s.workers, use_gpu=use_gpu, placement_strategy=s.placement,
                         resources_per_worker={"CPU": cpus}), cpus


def run_resources(cfg: TrainConfig) -> tuple[dict[str, float], int]:
    """What one run holds (all its workers together) and the torch threads per worker. A
    one-worker run of a tiny family takes a share of a GPU (FAMILIES[...].gpu_share), so
    several of them train on one GPU at once."""
    sc, threads = scaling(cfg)
    share = FAMILIES[cfg.model.family].gpu_share if cfg.scaling.workers == 1 else 1.0
    return {"CPU": threads * sc.num_workers,
            "GPU": share * sc.num_workers if sc.use_gpu else 0}, threads


def parallel_slots(cfg: TrainConfig) -> int:
    """How many runs like this one the cluster holds at once (the budget planner's width)."""
    need, _ = run_resources(cfg)
    have = ray.cluster_resources()
    return max(1, min(int(have.get(k, 0) // v) for k, v in need.items() if v))


def make_trainer(cfg: TrainConfig, data_uri: str, name: str, callbacks: Optional[list] = None,
                 launched_at: Optional[float] = None) -> TorchTrainer:
    """The TorchTrainer for one run: scaling, storage, checkpoint scoring, fault tolerance."""
    scaling_config, threads = scaling(cfg)
    path, fs = storage(cfg.store)
    # Found or created once here: DDP workers all log to it (Lightning logs from rank 0).
    cfg = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(
        update={"mlflow_run_id": tracked_run(cfg)})})
    # Ray Train passes this variable on to its controller: one start-up attempt, this long.
    set_driver_setting(START_TIMEOUT_ENV, str(cfg.scaling.start_timeout_s))
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"cfg": cfg.model_dump(mode="json"), "data_uri": data_uri,
                           "threads": threads,
                           "launched_at": launched_at or time.time()},
        scaling_config=scaling_config,
        run_config=RunConfig(
            name=name, storage_path=path, storage_filesystem=fs, callbacks=callbacks or [],
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.scaling.num_to_keep,
                                               checkpoint_score_attribute=M.SCORE,
                                               checkpoint_score_order=M.SCORE_MODE),
            # A worker group that cannot start is not retried (Ray's default retries forever,
            # so a run whose resources never appear would hang): it fails with its reason.
            failure_config=FailureConfig(max_failures=cfg.scaling.max_failures,
                                         controller_failure_limit=0)))


def runs_here(cfg: TrainConfig) -> bool:
    """One worker with no Ray cluster to join trains in this process (cluster/in_process.py);
    --in-process / --no-in-process decide it either way."""
    s = cfg.scaling
    if s.in_process is not None:
        return s.in_process
    return s.workers == 1 and not cluster_to_join(s.ray_address)


def fit(cfg: TrainConfig, data_uri: str, name: str) -> Fitted:
    """Train (a run of the same name resumes from its latest checkpoint): one worker in this
    process (cluster/in_process.py; on a cluster, train_on_cluster makes this process a Ray
    task holding the run's resources), several as a Ray Train run (DDP)."""
    launched_at = time.time()
    start = time.perf_counter()
    if cfg.scaling.workers == 1:
        best, latest = fit_here(cfg, data_uri, join(ray_storage(cfg.store), name, "in_process"),
                                launched_at, cfg.scaling.cpus_per_worker or local_cpus())
        with local_checkpoint(best.uri) as path:
            state = net_state_from_checkpoint(path)
        with local_checkpoint(latest.uri) as path:
            history = history_from_checkpoint(load_checkpoint(path))
        best_metrics, best_path = best.metrics, best.uri
    else:
        connect(cfg.scaling.ray_address)
        check_cluster(cfg)
        ray_best, best_metrics, ray_latest = _fit_ddp(cfg, data_uri, name, launched_at)
        with ray_best.as_directory() as d:
            state = net_state_from_checkpoint(os.path.join(d, CHECKPOINT_FILE))
        with ray_latest.as_directory() as d:  # the latest one holds every epoch's metrics
            history = history_from_checkpoint(load_checkpoint(os.path.join(d, CHECKPOINT_FILE)))
        best_path = ray_best.path
    seconds = time.perf_counter() - start
    metrics = {k: float(v) for k, v in best_metrics.items()
               if isinstance(v, (int, float)) and "/" in k}
    # Training seconds are the run's own (first batch to last epoch), not the wait for a
    # place on the cluster that fanned-out branches spend in Ray's queue.
    last = history[-1] if history else {}
    own = last.get(FIT_S)
    # When its steps ran, on the driver's clock (a timeline of runs side by side).
    first = launched_at + last.get(STARTUP_S, 0.0)
    return Fitted(state, metrics, history, best_path, round(own or seconds, 2),
                  cfg.scaling.workers, round(seconds, 2),
                  (round(first, 3), round(first + own, 3)) if own else None)


def local_cpus() -> int:
    """The cores this process may use (a container's limit, where Ray would count them too)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _best(checkpoints: list) -> tuple[Any, dict]:
    return max(checkpoints, key=lambda cm: cm[1].get(M.SCORE, -1.0))


def _fit_ddp(cfg: TrainConfig, data_uri: str, name: str, launched_at: float
             ) -> tuple[Any, dict, Any]:
    trainer = make_trainer(cfg, data_uri, name, launched_at=launched_at)
    try:
        result = trainer.fit()
    except Exception as e:
        reason = explain_failure(e, trainer.scaling_config, cfg.scaling.start_timeout_s)
        if reason is None:
            raise
        raise UserError(reason) from None
    return (*_best(result.best_checkpoints), result.checkpoint)


T = TypeVar("T")


def train_on_cluster(cfg: TrainConfig, fn: Callable[[TrainConfig], T]) -> T:
    """fn(cfg) (the train stage) run on the cluster, so that trainings submitted together run
    side by side as Ray's scheduler places them. One worker: a Ray task holding the run's
    resources (CPUs, its GPU share) that trains Lightning in its own process (Ray keeps such
    worker processes warm: no Tune experiment, trial actor or imports per training); Ray
    retries it on a lost worker or node and it resumes from its last saved epoch. Several
    workers: a zero-CPU driver task that runs Ray Train."""
    connect(cfg.scaling.ray_address)
    check_cluster(cfg)
    if cfg.scaling.workers > 1:
        return on_cluster(cfg.scaling.ray_address, fn, cfg)
    resources, threads = run_resources(cfg)
    wait_until_placeable(resources, cfg.scaling.start_timeout_s)
    here = cfg.model_copy(update={"scaling": cfg.scaling.model_copy(
        update={"in_process": True, "cpus_per_worker": threads})})
    task = ray.remote(num_cpus=resources["CPU"], num_gpus=resources["GPU"],
                      max_retries=cfg.scaling.max_failures)(fn)
    return ray.get(task.remote(here))


def evaluate_where_trained(cfg: TrainConfig, fn: Callable[[str], T], uri: str) -> T:
    """fn(uri) (an evaluation of a model trained with cfg) as a Ray task holding what its
    one-worker training held, when this process is connected to Ray: evaluations then take
    their turn beside the trainings (Ray decides), instead of crowding the driver's cores with
    one thread each; without Ray, here."""
    if not ray.is_initialized():
        return fn(uri)
    resources, threads = run_resources(cfg.model_copy(update={"scaling": cfg.scaling.model_copy(
        update={"workers": 1})}))
    task = ray.remote(num_cpus=resources["CPU"], num_gpus=resources["GPU"],
                      max_retries=cfg.scaling.max_failures)(_with_threads)
    return ray.get(task.remote(fn, uri, threads))


def _with_threads(fn: Callable[[str], T], uri: str, threads: int) -> T:
    torch.set_num_threads(threads)
    return fn(uri)


def train_stage(cfg: TrainConfig, fn: Callable[[TrainConfig], T]) -> T:
    """`imgclf train`: a one-worker training on a cluster (or with --no-in-process, a local
    Ray's) is a Ray task there, as a flow's is; otherwise this process trains (no cluster to
    join) or drives Ray Train itself."""
    if cfg.scaling.workers == 1 and not runs_here(cfg):
        return train_on_cluster(cfg, fn)
    return fn(cfg)
