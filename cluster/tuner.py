"""Ray Tune over the study's levers; ASHA stops weak trials. A one-worker trial runs Lightning
directly in its own process (Ray's pattern for Lightning in Tune: nothing else to start); a
trial of several workers drives its own TorchTrainer (the Ray Train V2 pattern) whose epoch
reports reach Tune through TuneReportCallback.
It runs the trials and hands back their rows; naming, caching and best.json are the tune
stage's (flows/tune.py)."""
from __future__ import annotations

import logging
import math
import random
import time
import uuid
from typing import Any

import ray
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import ASHAScheduler

from cluster.config import SearchSpace, TrainConfig, TuneConfig, apply_levers
from cluster.connect import connect, tune_verbosity
from cluster.launcher import make_trainer, run_resources, storage
from cluster.ray_compat import keep_secrets_out_of_runtime_envs
from cluster.train_worker import train_in_trial
from cluster.trials import TrialLog, TrialRow, finished_points, unrecorded_rows
from lightning_modules import metrics as M
from lightning_modules.errors import UserError
from lightning_modules.layout import cache_key
from lightning_modules.nets import FAMILIES

log = logging.getLogger(__name__)


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


def sample_point(space: SearchSpace, base: TrainConfig, rng: random.Random) -> dict[str, Any]:
    """One draw of the five levers (and weight decay): lr log-uniform, dropout uniform, the
    others uniform over their choices."""
    s = space
    lo, hi = lr_range(s, base.optim.lr)
    return {"lr": math.exp(rng.uniform(math.log(lo), math.log(hi))),
            "batch_size": rng.choice(s.batch_sizes),
            "activation": rng.choice(s.activations),
            "structure": rng.choice(structures(s, base.model.family)),
            "dropout": rng.uniform(s.dropout_min, s.dropout_max)
            if s.dropout_max > s.dropout_min else s.dropout_min,
            "weight_decay": rng.choice(s.weight_decays)}


def sample_points(cfg: TuneConfig) -> list[dict[str, Any]]:
    """The search's configs, drawn here from the branch's seed rather than by Tune: the same
    inputs give the same list, so a resumed search knows which of them finished from the trial
    records alone (nothing of Tune's pickled state is read back). The first is the base's."""
    rng = random.Random(search_seed(cfg))
    first = {**sample_point(cfg.space, cfg.base, rng), **base_point(cfg.base, cfg.space)}
    return [first] + [sample_point(cfg.space, cfg.base, rng)
                      for _ in range(cfg.tune.num_samples - 1)]


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
    """The trial's training config: the base with its point's levers."""
    return apply_levers(TrainConfig(**config["base"]), config["point"]["params"],
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


def run_trials(cfg: TuneConfig, name: str, data_uri: str, log_uri: str
               ) -> tuple[list[TrialRow], float]:
    """Run the search's points that have no record yet (all of them the first time); one JSON
    per finished trial under `<log_uri>/trials/`. Returns a row per point and the wall seconds.
    A resumed search restarts its unfinished trials from their first epoch."""
    points = sample_points(cfg)
    done = finished_points(log_uri)
    todo = [{"index": i, "params": p} for i, p in enumerate(points) if i not in done]
    if done:
        log.info("tune %s: %d of %d trials finished before; running the other %d", name,
                 len(done), len(points), len(todo))
    started = time.perf_counter()
    rows: dict[int, TrialRow] = {}
    if todo:
        # Each attempt is an experiment of its own: an earlier attempt's state is never read.
        attempt = f"{name}-resume-{uuid.uuid4().hex[:6]}" if done else name
        rows = _run(cfg, attempt, data_uri, log_uri, todo)
    rows.update(finished_points(log_uri))
    return [rows[i] for i in sorted(rows)], time.perf_counter() - started


def _run(cfg: TuneConfig, attempt: str, data_uri: str, log_uri: str,
         todo: list[dict[str, Any]]) -> dict[int, TrialRow]:
    connect(cfg.base.scaling.ray_address)
    keep_secrets_out_of_runtime_envs()
    base = _check_capacity(cfg)
    path, fs = storage(cfg.base.store)
    space = {"point": tune.grid_search(todo), "base": base.model_dump(mode="json"),
             "data_uri": data_uri, "max_epochs": cfg.tune.max_epochs, "tune_name": attempt}
    tuner = tune.Tuner(_trainable(base), param_space=space, tune_config=_tune_config(cfg),
                       run_config=tune.RunConfig(
                           name=attempt, storage_path=path, storage_filesystem=fs,
                           callbacks=[TrialLog(log_uri, cfg.tune.max_epochs)],
                           verbose=tune_verbosity()))
    return unrecorded_rows(tuner.fit(), cfg.tune.max_epochs)


def _trainable(base: TrainConfig) -> Any:
    """One worker: the trial holds its CPUs (and GPU) and trains itself. Several: the trial
    driver only waits on its TorchTrainer, so it holds no CPU (a token of memory, since Tune
    refuses an empty request) and the CPUs all go to the training workers."""
    if base.scaling.workers == 1:
        resources, _ = run_resources(base)  # the same CPU and GPU decision as a training's
        return tune.with_resources(direct_trial, resources)
    return tune.with_resources(trial_driver, {"CPU": 0, "memory": 1})


def _tune_config(cfg: TuneConfig) -> tune.TuneConfig:
    """The points as a grid (one trial each, in order), at most max_concurrent at once; ASHA."""
    return tune.TuneConfig(
        num_samples=1,
        max_concurrent_trials=cfg.tune.max_concurrent,
        time_budget_s=cfg.tune.time_budget_s,
        # A trial reuses the finished one's process (same resources): no new process to start
        # and import torch into.
        reuse_actors=True,
        scheduler=ASHAScheduler(time_attr="training_iteration", metric=M.SCORE,
                                mode=M.SCORE_MODE, max_t=cfg.tune.max_epochs,
                                grace_period=cfg.tune.grace_period,
                                reduction_factor=cfg.tune.reduction_factor))
