"""Ray Tune over the study's levers; ASHA stops weak trials. A one-worker trial runs Lightning
directly in its own process (Ray's pattern for Lightning in Tune: nothing else to start); a
trial of several workers drives its own TorchTrainer (the Ray Train V2 pattern) whose epoch
reports reach Tune through TuneReportCallback.
It runs the trials and hands back their rows; naming, caching and best.json are the tune
stage's (flows/tune.py)."""
from __future__ import annotations

import os
import time
import uuid
from typing import Any, Optional

import ray
from pydantic import BaseModel, ConfigDict, Field
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator

from cluster.config import SearchSpace, TrainConfig, TuneConfig, apply_levers
from cluster.connect import connect, tune_verbosity
from cluster.launcher import make_trainer, run_resources, storage
from cluster.train_worker import IMG_PER_S, STARTUP_S, train_in_trial
from lightning_modules import metrics as M
from lightning_modules.errors import UserError
from lightning_modules.layout import cache_key
from lightning_modules.nets import FAMILIES
from lightning_modules.store import join, write_json


class TrialRow(BaseModel):
    """One trial as the tune stage records it (trials.json); scores under their metric names."""

    model_config = ConfigDict(populate_by_name=True)

    trial_id: Optional[str] = None
    params: dict[str, Any]
    best_score: Optional[float] = Field(None, alias=M.SCORE, description="best over epochs")
    epochs: int = 0
    seconds: Optional[float] = None
    img_per_s: Optional[float] = Field(None, description="steady-state training speed")
    startup_s: Optional[float] = Field(None, description="trial start to its first batch")
    stopped_early: bool = False
    error: Optional[str] = None


def structures(space: SearchSpace, family: str) -> list[str]:
    """The structures to sample: as asked (checked against the family's), or its CPU-sized."""
    fam = FAMILIES[family]
    presets = space.presets or fam.cpu_presets()
    unknown = sorted(set(presets) - set(fam.presets))
    if unknown:
        raise UserError(f"--presets {unknown} are not structures of {family!r} "
                        f"({sorted(fam.presets)})")
    return presets


def lr_range(space: SearchSpace, base_lr: float) -> tuple[float, float]:
    """The space's learning-rate range, or, when the base's rate lies outside it (a family
    whose optimiser runs at another scale: dcnn's SGD at 0.375 against AdamW's 2e-3), a range
    as wide (the same ratio) centred on the base's rate."""
    if space.lr_min <= base_lr <= space.lr_max:
        return space.lr_min, space.lr_max
    half = (space.lr_max / space.lr_min) ** 0.5
    return base_lr / half, min(10.0, base_lr * half)


def param_space(space: SearchSpace, base: TrainConfig) -> dict[str, Any]:
    """Tune's distributions for the five levers (and weight decay), named as the levers are."""
    s, family = space, base.model.family
    return {"lr": tune.loguniform(*lr_range(s, base.optim.lr)),
            "batch_size": tune.choice(s.batch_sizes),
            "activation": tune.choice(s.activations),
            "structure": tune.choice(structures(s, family)),
            "dropout": tune.uniform(s.dropout_min, s.dropout_max)
            if s.dropout_max > s.dropout_min else s.dropout_min,
            "weight_decay": tune.choice(s.weight_decays)}


def base_point(base: TrainConfig, space: SearchSpace) -> dict[str, Any]:
    """The base config's own levers where the space allows them: Tune's first trial (the
    family's recipe, in a pipeline), so a small search never ends worse than where it
    started. A lever whose base value is outside the space is sampled as in any trial."""
    fam = FAMILIES[base.model.family]
    point = {"lr": base.optim.lr, "batch_size": base.optim.batch_size,
             "activation": base.model.activation,
             "structure": base.model.preset or fam.default_preset,
             "dropout": base.model.dropout, "weight_decay": base.optim.weight_decay}
    lo, hi = lr_range(space, base.optim.lr)
    allowed = {"lr": lambda v: lo <= v <= hi,
               "batch_size": lambda v: v in space.batch_sizes,
               "activation": lambda v: v in space.activations,
               "structure": lambda v: v in structures(space, base.model.family),
               "dropout": lambda v: space.dropout_min <= v <= space.dropout_max,
               "weight_decay": lambda v: v in space.weight_decays}
    return {k: v for k, v in point.items() if allowed[k](v)}


def search_seed(cfg: TuneConfig) -> int:
    """The sampler's seed, from the run's seed and the branch: each (dataset, family) samples
    configs of its own (one seed for all made every branch try the same configs)."""
    b = cfg.base
    return int(cache_key(b.seed, b.dataset, b.model.family), 16) % 2**31


def trial_config(config: dict[str, Any]) -> TrainConfig:
    """The trial's training config: the base with its sampled levers."""
    return apply_levers(TrainConfig(**config["base"]), config["params"],
                        epochs=config["max_epochs"])


def trial_driver(config: dict[str, Any]) -> None:
    """A trial of several workers: launch a TorchTrainer and forward its epoch reports to Tune."""
    trial = tune.get_context().get_trial_id()
    make_trainer(trial_config(config), config["data_uri"], f"{config['tune_name']}-{trial}",
                 callbacks=[TuneReportCallback()]).fit()


def direct_trial(config: dict[str, Any]) -> None:
    """A one-worker trial: Lightning in this process, each epoch reported to Tune."""
    cfg = trial_config(config)
    train_in_trial({"cfg": cfg.model_dump(mode="json"), "data_uri": config["data_uri"],
                    "threads": cfg.scaling.cpus_per_worker or 1, "launched_at": time.time()})


class TrialLog(tune.Callback):
    """One JSON file per finished trial under `<tune uri>/trials/` (progress, survives a crash)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        record = {"trial_id": trial.trial_id, "params": trial.config.get("params"),
                  "last": {k: v for k, v in (trial.last_result or {}).items()
                           if isinstance(v, (int, float)) and not isinstance(v, bool)},
                  "finished_at": time.time()}
        write_json(join(self.uri, "trials", f"{trial.trial_id}-{uuid.uuid4().hex[:6]}.json"),
                   record)


def _check_capacity(cfg: TuneConfig) -> TrainConfig:
    """Per-worker CPUs so max_concurrent trials fit; refuse a budget the cluster can never place."""
    total = int(ray.cluster_resources().get("CPU", 0))
    s = cfg.base.scaling
    cpus = s.cpus_per_worker or max(1, total // (cfg.tune.max_concurrent * s.workers))
    need = cfg.tune.max_concurrent * s.workers * cpus
    if need > total:
        raise UserError(f"--max-concurrent {cfg.tune.max_concurrent} trials × {s.workers} "
                        f"worker(s) × {cpus} CPU(s) = {need} CPUs, but the cluster has {total}")
    base = cfg.base.model_copy(deep=True)
    base.scaling.cpus_per_worker = cpus
    return base


def _trial_rows(results: tune.ResultGrid, max_epochs: int) -> list[TrialRow]:
    rows = []
    for r in results:
        df = r.metrics_dataframe
        best = float(df[M.SCORE].max()) if df is not None and M.SCORE in df else None
        epochs = int(df["training_iteration"].max()) if df is not None and len(df) else 0
        last = r.metrics or {}
        rows.append(TrialRow(trial_id=last.get("trial_id"),
                             params=r.config["params"], best_score=best, epochs=epochs,
                             seconds=last.get("time_total_s"), img_per_s=last.get(IMG_PER_S),
                             startup_s=last.get(STARTUP_S),
                             stopped_early=r.error is None and epochs < max_epochs,
                             error=str(r.error)[:300] if r.error else None))
    return rows


def run_trials(cfg: TuneConfig, name: str, data_uri: str, log_uri: str
               ) -> tuple[list[TrialRow], float]:
    """Run (or resume, by name) the experiment; one JSON per finished trial under
    `<log_uri>/trials/`. Returns a row per trial and the wall seconds."""
    space = param_space(cfg.space, cfg.base)
    # Save the experiment state at every step (Tune's default waits 10 s or more), so a trial
    # that finished just before the driver died is known finished and is not run again.
    os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = "0"
    connect(cfg.base.scaling.ray_address)
    base = _check_capacity(cfg)
    path, fs = storage(cfg.base.store)
    trainable = _trainable(base)
    exp_path = f"{path.rstrip('/')}/{name}"
    full_space = {"params": space, "base": base.model_dump(mode="json"), "data_uri": data_uri,
                  "max_epochs": cfg.tune.max_epochs, "tune_name": name}
    if tune.Tuner.can_restore(exp_path, storage_filesystem=fs):
        # Tune does not save the param space (tuner.pkl drops it) and would resume with
        # config=None; hand the same one back (Tune checks that its keys match).
        tuner = tune.Tuner.restore(exp_path, trainable, resume_unfinished=True,
                                   resume_errored=True, param_space=full_space,
                                   storage_filesystem=fs)
    else:
        tuner = tune.Tuner(trainable, param_space=full_space,
                           tune_config=_tune_config(cfg),
                           run_config=tune.RunConfig(
                               name=name, storage_path=path, storage_filesystem=fs,
                               callbacks=[TrialLog(log_uri)],
                               # A trial's latest checkpoint is all a resume needs.
                               checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                               verbose=tune_verbosity()))
    started = time.perf_counter()
    results = tuner.fit()
    return _trial_rows(results, cfg.tune.max_epochs), time.perf_counter() - started


def _trainable(base: TrainConfig) -> Any:
    """One worker: the trial holds its CPUs (and GPU) and trains itself. Several: the trial
    driver only waits on its TorchTrainer, so it holds no CPU (a token of memory, since Tune
    refuses an empty request) and the CPUs all go to the training workers."""
    if base.scaling.workers == 1:
        resources, _ = run_resources(base)  # the same CPU and GPU decision as a training's
        return tune.with_resources(direct_trial, resources)
    return tune.with_resources(trial_driver, {"CPU": 0, "memory": 1})


def _tune_config(cfg: TuneConfig) -> tune.TuneConfig:
    """Sampling and ASHA. The concurrency limit lives on the generator: Tune ignores
    max_concurrent_trials (with a warning) when given a generator instance."""
    first = [{"params": base_point(cfg.base, cfg.space)}]
    return tune.TuneConfig(
        num_samples=cfg.tune.num_samples,
        search_alg=BasicVariantGenerator(random_state=search_seed(cfg),
                                         points_to_evaluate=first,
                                         max_concurrent=cfg.tune.max_concurrent),
        time_budget_s=cfg.tune.time_budget_s,
        # A trial reuses the finished one's process (same resources): no new process to start
        # and import torch into. Four tunings × 2 trials at once: 61.3 s → 40.0 s (README,
        # "Tuning benchmark").
        reuse_actors=True,
        scheduler=ASHAScheduler(time_attr="training_iteration", metric=M.SCORE,
                                mode=M.SCORE_MODE, max_t=cfg.tune.max_epochs,
                                grace_period=cfg.tune.grace_period,
                                reduction_factor=cfg.tune.reduction_factor))
