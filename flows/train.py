"""Stage: train one model on Ray and publish its bundle. Run: `imgclf train --dataset mnist
--model cnn --epochs 1`. The stage names the run (from its inputs), reuses a finished bundle
of the same inputs, and writes the bundle; cluster/launcher.py only runs Ray."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from prefect import flow, task

from cluster.config import TrainConfig
from flows.prepare_data import latest_dataset
from flows.retry import transient_only
from lightning_modules import layout, tracking
from lightning_modules.bundle import INFO, write_bundle
from lightning_modules.datamodule import MissingDatasetError, load_manifest
from lightning_modules.errors import UserError
from lightning_modules.nets import parameter_count
from lightning_modules.store import join, read_json, write_json
from lightning_modules.store_check import check_store

log = logging.getLogger(__name__)


@dataclass
class TrainOutcome:
    run_name: str
    bundle_uri: str
    info: dict
    cached: bool


def run_name(cfg: TrainConfig, data_key: str) -> str:
    """Deterministic from everything that changes the weights, so a re-run resumes or is cached."""
    return f"{cfg.dataset}-{cfg.model.family}-{layout.cache_key(cfg, data_key)}"


def check_data(cfg: TrainConfig) -> tuple[str, dict]:
    """The dataset's URI and manifest, and the checks that need no Ray (batch vs. data size)."""
    check_store(cfg.store)
    data_uri = latest_dataset(cfg.store, cfg.dataset)
    try:
        manifest = load_manifest(data_uri)
    except MissingDatasetError as e:
        raise UserError(str(e)) from None
    check_size(cfg, manifest)
    n_train = min(manifest["splits"]["train"]["count"], cfg.max_train_samples or 1 << 62)
    if cfg.optim.batch_size > n_train:
        raise UserError(f"--batch-size {cfg.optim.batch_size} is larger than the training set "
                        f"({n_train} images)")
    return data_uri, manifest


# Weights, their gradients and two optimiser moments, in 32-bit floats.
BYTES_PER_PARAMETER = 16


def check_size(cfg: TrainConfig, manifest: dict) -> None:
    """Refuse, before any work, a network whose training state exceeds this machine's memory."""
    import psutil

    params = parameter_count(cfg.model, tuple(manifest["shape"]), len(manifest["classes"]))
    need, have = params * BYTES_PER_PARAMETER, psutil.virtual_memory().total
    if need > have:
        raise UserError(f"the {cfg.model.family} network has {params:,} parameters: training "
                        f"needs about {need / 2**30:,.1f} GiB, this machine has "
                        f"{have / 2**30:,.1f} GiB; give smaller --widths or --preset")


def train_model(cfg: TrainConfig) -> TrainOutcome:
    """Train on Ray (or reuse a finished bundle for the same inputs) and publish the bundle."""
    from cluster.launcher import fit  # Ray is imported only by the stages that run it

    data_uri, manifest = check_data(cfg)
    name = run_name(cfg, manifest["key"])
    bundle_uri = layout.bundle_uri(cfg.store, cfg.dataset, cfg.model.family, name)
    done = read_json(join(bundle_uri, INFO))
    if done is not None:
        log.info("%s: finished already, bundle at %s", name, bundle_uri)
        return TrainOutcome(name, bundle_uri, done, cached=True)
    fitted = fit(cfg, data_uri, name)
    info = {"dataset": cfg.dataset, "data_uri": data_uri, "data_key": manifest["key"],
            "family": cfg.model.family, "model": cfg.model.model_dump(mode="json"),
            "config": cfg.model_dump(mode="json"), "classes": manifest["classes"],
            "shape": manifest["shape"], "mean": manifest["mean"], "std": manifest["std"],
            "run_name": name, "checkpoint": fitted.checkpoint,
            "train_seconds": fitted.seconds, "wall_seconds": fitted.wall_seconds,
            "steps_span": fitted.steps_span,
            "workers": fitted.workers,
            "history": fitted.history, "metrics": fitted.metrics}
    info = write_bundle(bundle_uri, fitted.state, info)
    write_json(layout.latest(layout.models_dir(cfg.store, cfg.dataset, cfg.model.family)),
               {"run_name": name, "uri": bundle_uri})
    return TrainOutcome(name, bundle_uri, info, cached=False)


@task(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=transient_only,
      task_run_name="train {cfg.dataset}/{cfg.model.family}")
def train_task(cfg: TrainConfig) -> str:
    """Train (a retry resumes the same run from its last checkpoint); returns the bundle URI.
    A Ray task of its own, so trainings submitted together run side by side."""
    from cluster.launcher import train_on_cluster

    return train_on_cluster(cfg, train_model).bundle_uri


@flow(name="train")
def train(cfg: TrainConfig = TrainConfig()) -> str:
    """Ray-distributed Lightning training of one (dataset, family); returns the bundle URI.

    Args:
        cfg: the dataset, the model (family, structure, activation, dropout), the optimiser,
            epochs, seed, how it maps onto Ray (workers, CPUs, GPUs) and the store.
    """
    return train_task(tracking.with_env(cfg))


if __name__ == "__main__":
    print(train(TrainConfig()))
