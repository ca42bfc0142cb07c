"""The training functions Ray runs: on every rank of a Ray Train run (Lightning inside, DDP via
Ray), or, for one worker, Lightning directly in a Tune trial (no Train controller or worker
group to start: Ray's documented pattern for Lightning in Tune)."""
from __future__ import annotations

import logging
import os
import tempfile
import time
from typing import Any, Callable, Optional

import lightning.pytorch as pl
import ray.train
import torch
from ray import tune
from ray.train.lightning import (
    RayDDPStrategy,
    RayLightningEnvironment,
    RayTrainReportCallback,
    prepare_trainer,
)

from cluster.config import TrainConfig
from lightning_modules import layout, tracking
from lightning_modules import metrics as M
from lightning_modules.classifier import Classifier
from lightning_modules.datamodule import PreparedData
from lightning_modules.history import EpochHistory
from lightning_modules.nets import build_net

log = logging.getLogger(__name__)
CHECKPOINT_FILE = RayTrainReportCallback.CHECKPOINT_NAME
WORLD_SIZE, IMG_PER_S, STARTUP_S, FIT_S = M.WORLD_SIZE, M.IMG_PER_S, M.STARTUP_S, M.FIT_S


class LogWorldSize(pl.Callback):
    """Reports the DDP world size with each epoch's metrics, so a run shows how it was spread."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.log(WORLD_SIZE, float(trainer.world_size), rank_zero_only=True)


class DeadlineStop(pl.Callback):
    """Ends training at a wall-clock deadline once an epoch is complete, keeping its best epoch
    so far, so that a budgeted pipeline publishes on time even when the machine ran slower
    than its plan assumed (another run beside it, say). A training whose remaining epochs
    end within `grace` seconds of the deadline finishes them: a schedule cut short leaves the
    weights at a high learning rate, which costs more than a few seconds."""

    def __init__(self, deadline: float, grace: float = 60.0) -> None:
        self.deadline, self.grace = deadline, grace
        self.started, self.first_epoch = time.time(), 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started, self.first_epoch = time.time(), trainer.current_epoch

    def _stop(self, trainer: pl.Trainer, done: int, remaining_s: float) -> None:
        late = time.time() + remaining_s > self.deadline + self.grace
        if trainer.should_stop or done < 1 or not late:
            return
        trainer.should_stop = True
        log.warning("deadline reached: training stops after %d of %d epoch(s), keeping its "
                    "best", done, trainer.max_epochs)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self._stop(trainer, trainer.current_epoch, 0.0)  # past the grace: stop now

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        done = trainer.current_epoch + 1
        per_epoch = (time.time() - self.started) / max(1, done - self.first_epoch)
        self._stop(trainer, done, per_epoch * (trainer.max_epochs - done))


class ThroughputMeter(pl.Callback):
    """Steady-state training img/s over all workers (first batches skipped as warm-up when the
    epoch has more; the clock stops at the epoch's last training batch, so validation is not
    counted: a tuning trial validates on more images than it trains on), and the seconds from
    the launcher's call to the first batch (Ray start-up + trainer set-up)."""

    WARMUP = 3

    def __init__(self, launched_at: float) -> None:
        self.launched_at = launched_at
        self.t0: float | None = None
        self.t_last = 0.0
        self.images = 0
        self.first_batch_at: float | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self.t0, self.images = None, 0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any,
                             batch_idx: int) -> None:
        if self.first_batch_at is None:
            self.first_batch_at = time.time()
        if batch_idx in (0, self.WARMUP):  # restart the count after warm-up, if it comes
            self.t0, self.images = time.perf_counter(), 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.t0 is not None:
            self.images += len(batch[1])
            self.t_last = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.t0 is not None and self.images:
            rate = self.images / (self.t_last - self.t0) * trainer.world_size
            pl_module.log(IMG_PER_S, rate, rank_zero_only=True)
        if self.first_batch_at is not None:
            pl_module.log(STARTUP_S, self.first_batch_at - self.launched_at, rank_zero_only=True)
            pl_module.log(FIT_S, time.time() - self.first_batch_at, rank_zero_only=True)


def device_type() -> str:
    """What Lightning's accelerator="auto" picks in this worker (Ray sets its visible GPUs)."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def build(cfg: TrainConfig, data_uri: str, device: Optional[str] = None
          ) -> tuple[Classifier, PreparedData]:
    """The datamodule and the module, from the config alone."""
    _, channels_last = cfg.compute.resolved(cfg.model.family, device or device_type())
    dm = PreparedData(data_uri, cfg.optim.batch_size, max_train_samples=cfg.max_train_samples,
                      seed=cfg.seed, resident=cfg.compute.resident_data,
                      max_eval_samples=cfg.max_eval_samples, stream=cfg.compute.stream_data,
                      cache_dir=cfg.compute.shard_cache)
    net = build_net(cfg.model, dm.shape, len(dm.classes))
    return Classifier(net, len(dm.classes), cfg.optim.model_dump(),
                      config=cfg.model_dump(mode="json"), channels_last=channels_last), dm


def distributed(world_size: int) -> dict[str, Any]:
    """DDP through Ray for several workers; one worker trains without the DDP wrapper, whose
    per-step cost showed on `bp`: 11.6k img/s with it, 19.0k without, in two separate runs of
    `bench/train.py --families bp,dnn` on a 2-core machine (a noisy one)."""
    if world_size == 1:
        return {"strategy": "auto"}
    return {"strategy": RayDDPStrategy(), "plugins": [RayLightningEnvironment()]}


def callbacks(config: dict) -> list[pl.Callback]:
    """The worker's callbacks. LogWorldSize runs first so its value is in the metrics the report
    callback sends; EpochHistory before the report callback, so each checkpoint holds its own
    epoch. (Fault drills in tests/ wrap this function inside the worker, as Ray's tests do.)"""
    return [LogWorldSize(), ThroughputMeter(config["launched_at"]), EpochHistory(),
            RayTrainReportCallback()]


def tracked_run(cfg: TrainConfig, kind: str = "training") -> Optional[str]:
    """The MLflow run this training logs to (found by its content and parent, or created with
    the config as parameters); None when nothing is tracked."""
    t = cfg.tracking
    if t.mlflow_run_id or not t.tracking_uri:
        return t.mlflow_run_id
    return tracking.run_for(t, layout.cache_key(cfg, t.parent_run_id, kind),
                            f"{kind} {cfg.dataset}/{cfg.model.family} seed {cfg.seed}", kind,
                            params=layout.identity(cfg))


def lightning_trainer(cfg: TrainConfig, cbs: list[pl.Callback], world_size: int,
                      device: Optional[str] = None, kind: str = "training") -> pl.Trainer:
    """The Lightning Trainer of a run: Ray's reports replace Lightning's checkpoints; its
    metrics go to MLflow when tracked. The device is what Ray made visible unless given."""
    device = device or device_type()
    if cfg.scaling.deadline is not None:
        cbs = [DeadlineStop(cfg.scaling.deadline), *cbs]
    precision, _ = cfg.compute.resolved(cfg.model.family, device)
    return pl.Trainer(max_epochs=cfg.epochs, accelerator=device,
                      devices=1 if world_size == 1 else "auto",
                      precision=precision,  # type: ignore[arg-type]
                      **distributed(world_size), callbacks=cbs, enable_checkpointing=False,
                      logger=tracking.lightning_logger(cfg.tracking, tracked_run(cfg, kind)),
                      enable_progress_bar=False, enable_model_summary=False,
                      num_sanity_val_steps=0)


def fit_from(trainer: pl.Trainer, module: Classifier, dm: PreparedData,
             checkpoint: Optional[Any]) -> None:
    """Fit, resuming from the run's latest checkpoint when Ray hands one back."""
    if checkpoint is None:
        trainer.fit(module, datamodule=dm)
        return
    with checkpoint.as_directory() as ckpt_dir:
        trainer.fit(module, datamodule=dm, ckpt_path=os.path.join(ckpt_dir, CHECKPOINT_FILE),
                    weights_only=True)  # a checkpoint from the store never runs code


def train_loop_per_worker(config: dict) -> None:
    """Entry point of each Ray Train worker; resumes from the run's latest checkpoint if any."""
    cfg = TrainConfig(**config["cfg"])
    torch.set_num_threads(int(config["threads"]))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    module, dm = build(cfg, config["data_uri"])
    world = ray.train.get_context().get_world_size()
    trainer = lightning_trainer(cfg, callbacks(config), world)
    if world > 1:
        trainer = prepare_trainer(trainer)
    fit_from(trainer, module, dm, ray.train.get_checkpoint())


class EpochReport(pl.Callback):
    """Each epoch's metrics (and checkpoint) to a sink, after validation (as Ray Train's report
    callback does): Tune's report (so ASHA sees every epoch; a trial keeps no checkpoint, as a
    resumed search restarts unfinished trials), or the store for a run in the caller's process
    (cluster/in_process.py)."""

    def __init__(self, sink: Callable[[dict[str, float], Optional[str]], None],
                 checkpoint: bool = True) -> None:
        self.sink, self.checkpoint = sink, checkpoint

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
                   if getattr(v, "numel", lambda: 1)() == 1}
        metrics["epoch"] = trainer.current_epoch
        if not self.checkpoint:
            self.sink(metrics, None)
            return
        with tempfile.TemporaryDirectory() as d:
            trainer.save_checkpoint(os.path.join(d, CHECKPOINT_FILE))
            self.sink(metrics, d)


def tune_sink(metrics: dict[str, float], ckpt_dir: Optional[str]) -> None:
    tune.report(metrics)


def fit_one(cfg: TrainConfig, data_uri: str, threads: int, launched_at: float,
            sink: Callable[[dict[str, float], Optional[str]], None], *,
            device: Optional[str] = None, ckpt: Optional[str] = None, checkpoint: bool = True,
            kind: str = "training") -> None:
    """The one-worker training, wherever it runs (the caller's process, a Ray task holding the
    run's resources, a Tune trial): Lightning in this process, each epoch's metrics (and
    checkpoint) to sink, resuming from ckpt (a local file of plain weights) when given."""
    torch.set_num_threads(threads)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    module, dm = build(cfg, data_uri, device)
    cbs = [LogWorldSize(), ThroughputMeter(launched_at), EpochHistory(),
           EpochReport(sink, checkpoint=checkpoint)]
    # weights_only: a checkpoint read back from the store never runs code when loaded.
    lightning_trainer(cfg, cbs, 1, device, kind).fit(module, datamodule=dm, ckpt_path=ckpt,
                                                     weights_only=True)


def train_in_trial(config: dict) -> None:
    """A Tune trial's training (a trial keeps no checkpoint: a resumed search restarts it)."""
    fit_one(TrainConfig(**config["cfg"]), config["data_uri"], int(config["threads"]),
            config["launched_at"], tune_sink, checkpoint=False, kind="trial")
