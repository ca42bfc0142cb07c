"""Launch a Ray Train run for a TrainConfig and turn its best checkpoint into a model bundle."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Optional

import pyarrow.fs
import ray
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from cluster.connect import connect
from cluster.train_worker import CHECKPOINT_FILE, train_loop_per_worker
from flows.config import TrainConfig
from flows.errors import UserError
from flows.store import (check_store, filesystem, is_local, join, normalize, read_json,
                         write_json)
from lightning_modules import metrics as M
from lightning_modules.bundle import INFO, load_checkpoint, net_state_from_checkpoint, write_bundle
from lightning_modules.history import history_from_checkpoint
from lightning_modules.datamodule import MissingDatasetError, load_manifest

log = logging.getLogger(__name__)
# Read by Ray Train V2 (ray/train/v2/_internal/constants.py), passed on to its controller.
START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"


@dataclass
class TrainOutcome:
    run_name: str
    bundle_uri: str
    info: dict
    cached: bool


def dataset_uri(store: str, name: str) -> str:
    """The newest prepared version of a dataset name in a store."""
    latest = read_json(join(normalize(store), "datasets", name, "latest.json"))
    if latest is None:
        raise UserError(f"no prepared dataset {name!r} in {normalize(store)}; run imgclf prepare")
    return latest["uri"]


def run_name(cfg: TrainConfig, data_key: str) -> str:
    """Deterministic from everything that changes the weights, so a re-run resumes or is cached."""
    c = cfg.model_dump(mode="json")
    c["scaling"] = {"workers": cfg.scaling.workers}  # address, retries and kept ckpts don't count
    c.pop("store")
    digest = hashlib.sha256(json.dumps([c, data_key], sort_keys=True).encode()).hexdigest()
    return f"{cfg.dataset}-{cfg.model.family}-{digest[:12]}"


def storage(store: str) -> tuple[str, Optional[pyarrow.fs.FileSystem]]:
    """Ray's storage_path (and filesystem) for checkpoints: `<store>/ray`, s3 through fsspec."""
    url = join(normalize(store), "ray")
    if is_local(url):
        return url, None
    fs, path = filesystem(url)
    return path, pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs))


def scaling(cfg: TrainConfig) -> tuple[ScalingConfig, int]:
    """ScalingConfig plus torch threads per worker, from the config and the cluster's resources."""
    res = ray.cluster_resources()
    s = cfg.scaling
    use_gpu = s.use_gpu if s.use_gpu is not None else res.get("GPU", 0) >= 1
    cpus = s.cpus_per_worker or max(1, int(res.get("CPU", 1)) // s.workers)
    return ScalingConfig(num_workers=s.workers, use_gpu=use_gpu, placement_strategy=s.placement,
                         resources_per_worker={"CPU": cpus}), cpus


def check_cluster(cfg: TrainConfig) -> None:
    """A multi-node cluster needs a store every node can reach."""
    alive = [n for n in ray.nodes() if n.get("Alive")]
    if len(alive) > 1 and is_local(cfg.store):
        raise UserError(f"the Ray cluster has {len(alive)} nodes but the store "
                        f"{normalize(cfg.store)} is a local path; use shared storage (s3://...)")


def make_trainer(cfg: TrainConfig, data_uri: str, name: str, callbacks: Optional[list] = None,
                 fault_marker: Optional[str] = None, launched_at: Optional[float] = None
                 ) -> TorchTrainer:
    """The TorchTrainer for one run: scaling, storage, checkpoint scoring, fault tolerance."""
    scaling_config, threads = scaling(cfg)
    path, fs = storage(cfg.store)
    # Ray Train passes this variable on to its controller: one start-up attempt, this long.
    os.environ[START_TIMEOUT_ENV] = str(cfg.scaling.start_timeout_s)
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"cfg": cfg.model_dump(mode="json"), "data_uri": data_uri,
                           "threads": threads, "fault_marker": fault_marker,
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


def explain_failure(err: BaseException, sc: ScalingConfig, timeout_s: float) -> Optional[str]:
    """One line for a run whose workers could not be placed or started, else None."""
    from ray.train.v2.api.exceptions import ControllerError

    cause = getattr(err, "controller_failure", None) if isinstance(err, ControllerError) else None
    if cause is None:
        return None
    want = f"{sc.num_workers} worker(s) × {dict(sc.resources_per_worker or {})}"
    if sc.use_gpu:
        want += " + 1 GPU each"
    have = {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}
    return (f"the training workers did not start within {timeout_s:.0f} s: "
            f"{want} ({sc.placement_strategy}) could not be placed on the Ray cluster {have} "
            f"({type(cause).__name__}); use fewer --workers, or a longer --start-timeout-s "
            f"if the cluster is scaling up")


def check_data(cfg: TrainConfig) -> tuple[str, dict]:
    """The dataset's URI and manifest, and the checks that need no Ray (batch vs. data size)."""
    check_store(cfg.store)
    data_uri = dataset_uri(cfg.store, cfg.dataset)
    try:
        manifest = load_manifest(data_uri)
    except MissingDatasetError as e:
        raise UserError(str(e)) from None
    n_train = min(manifest["splits"]["train"]["count"], cfg.max_train_samples or 1 << 62)
    if cfg.optim.batch_size > n_train:
        raise UserError(f"--batch-size {cfg.optim.batch_size} is larger than the training set "
                        f"({n_train} images)")
    return data_uri, manifest


def train(cfg: TrainConfig, fault_marker: Optional[str] = None) -> TrainOutcome:
    """Train on Ray (or reuse a finished bundle for the same inputs) and publish the bundle."""
    data_uri, manifest = check_data(cfg)
    name = run_name(cfg, manifest["key"])
    bundle_uri = join(normalize(cfg.store), "models", cfg.dataset, cfg.model.family, name)
    done = read_json(join(bundle_uri, INFO))
    if done is not None:
        log.info("%s: finished already, bundle at %s", name, bundle_uri)
        return TrainOutcome(name, bundle_uri, done, cached=True)
    launched_at = time.time()
    connect(cfg.scaling.ray_address)
    check_cluster(cfg)
    trainer = make_trainer(cfg, data_uri, name, fault_marker=fault_marker, launched_at=launched_at)
    scaling_config = trainer.scaling_config
    start = time.perf_counter()
    try:
        result = trainer.fit()
    except Exception as e:
        reason = explain_failure(e, scaling_config, cfg.scaling.start_timeout_s)
        if reason is None:
            raise
        raise UserError(reason) from None
    seconds = time.perf_counter() - start
    best, best_metrics = max(result.best_checkpoints, key=lambda cm: cm[1].get(M.SCORE, -1.0))
    with best.as_directory() as d:
        state = net_state_from_checkpoint(os.path.join(d, CHECKPOINT_FILE))
    with result.checkpoint.as_directory() as d:  # the latest one holds every epoch's metrics
        history = history_from_checkpoint(load_checkpoint(os.path.join(d, CHECKPOINT_FILE)))
    info = {"dataset": cfg.dataset, "data_uri": data_uri, "data_key": manifest["key"],
            "family": cfg.model.family, "model": cfg.model.model_dump(mode="json"),
            "config": cfg.model_dump(mode="json"), "classes": manifest["classes"],
            "shape": manifest["shape"], "mean": manifest["mean"], "std": manifest["std"],
            "run_name": name, "checkpoint": best.path, "train_seconds": round(seconds, 2),
            "workers": scaling_config.num_workers, "history": history,
            "metrics": {k: float(v) for k, v in best_metrics.items()
                        if isinstance(v, (int, float)) and "/" in k}}
    info = write_bundle(bundle_uri, state, info)
    write_json(join(normalize(cfg.store), "models", cfg.dataset, cfg.model.family, "latest.json"),
               {"run_name": name, "uri": bundle_uri})
    return TrainOutcome(name, bundle_uri, info, cached=False)
