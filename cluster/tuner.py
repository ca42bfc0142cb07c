"""Ray Tune over the study's levers. Each trial drives its own TorchTrainer (the Ray Train V2
pattern) whose epoch reports reach Tune through TuneReportCallback; ASHA stops weak trials."""
from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

import ray
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator

from cluster.launcher import check_data, connect, make_trainer, storage
from flows.config import TrainConfig, TuneConfig
from flows.errors import UserError
from flows.store import join, normalize, read_json, write_json
from lightning_modules import metrics as M
from lightning_modules.config import PRESETS, cpu_presets


@dataclass
class TuneOutcome:
    name: str
    uri: str
    best: dict
    trials: list[dict]
    cached: bool = False


def tune_name(cfg: TuneConfig, data_key: str) -> str:
    blob = json.dumps([cfg.model_dump(mode="json", exclude={"base": {"store", "scaling"}}),
                       data_key], sort_keys=True)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:10]
    return cfg.tune.tune_name or f"tune-{cfg.base.dataset}-{cfg.base.model.family}-{digest}"


def param_space(cfg: TuneConfig) -> dict[str, Any]:
    """Tune's distributions for the five levers (and weight decay)."""
    s, family = cfg.space, cfg.base.model.family
    presets = s.presets or cpu_presets(family)
    unknown = sorted(set(presets) - set(PRESETS[family]))
    if unknown:
        raise UserError(f"--presets {unknown} are not structures of {family!r} "
                        f"({sorted(PRESETS[family])})")
    return {"lr": tune.loguniform(s.lr_min, s.lr_max), "batch_size": tune.choice(s.batch_sizes),
            "activation": tune.choice(s.activations), "preset": tune.choice(presets),
            "dropout": tune.uniform(s.dropout_min, s.dropout_max)
            if s.dropout_max > s.dropout_min else s.dropout_min,
            "weight_decay": tune.choice(s.weight_decays)}


def trial_config(base: TrainConfig, params: dict[str, Any], epochs: int) -> TrainConfig:
    """The base training config with one trial's sampled levers."""
    d = base.model_dump(mode="json")
    d["model"].update(activation=params["activation"], dropout=params["dropout"],
                      preset=params["preset"], widths=None)
    d["optim"].update(lr=params["lr"], batch_size=params["batch_size"],
                      weight_decay=params["weight_decay"])
    d["epochs"] = epochs
    return TrainConfig(**d)


def trial_driver(config: dict[str, Any]) -> None:
    """One Tune trial: launch a TorchTrainer and forward its epoch reports to Tune."""
    cfg = trial_config(TrainConfig(**config["base"]), config["params"], config["max_epochs"])
    trial = tune.get_context().get_trial_id()
    make_trainer(cfg, config["data_uri"], f"{config['tune_name']}-{trial}",
                 callbacks=[TuneReportCallback()]).fit()


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


def _trial_rows(results: tune.ResultGrid, max_epochs: int) -> list[dict]:
    rows = []
    for r in results:
        df = r.metrics_dataframe
        best = float(df[M.SCORE].max()) if df is not None and M.SCORE in df else None
        epochs = int(df["training_iteration"].max()) if df is not None and len(df) else 0
        rows.append({"trial_id": (r.metrics or {}).get("trial_id"), "params": r.config["params"],
                     "best_val_acc": best, "epochs": epochs,
                     "seconds": (r.metrics or {}).get("time_total_s"),
                     "stopped_early": r.error is None and epochs < max_epochs,
                     "error": str(r.error)[:300] if r.error else None})
    return rows


def run_tune(cfg: TuneConfig) -> TuneOutcome:
    """Run (or resume, by name) a tuning experiment; write best.json and trials.json."""
    # Every trial must fit its batch in the training set: check the largest before any trial.
    largest = cfg.base.model_copy(deep=True)
    largest.optim.batch_size = max(cfg.space.batch_sizes)
    data_uri, manifest = check_data(largest)
    space = param_space(cfg)
    name = tune_name(cfg, manifest["key"])
    uri = join(normalize(cfg.base.store), "tuning", cfg.base.dataset, cfg.base.model.family, name)
    best, rows = read_json(join(uri, "best.json")), read_json(join(uri, "trials.json"))
    if best is not None and rows is not None:  # same inputs, finished before: a cache hit
        return TuneOutcome(name, uri, best, rows, cached=True)
    # Save the experiment state at every step (Tune's default waits 10 s or more), so a trial
    # that finished just before the driver died is known finished and is not run again.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "0")
    connect(cfg.base.scaling.ray_address)
    base = _check_capacity(cfg)
    path, fs = storage(cfg.base.store)
    # The trial driver only waits on its TorchTrainer: no CPU of its own (a token of memory,
    # since Tune refuses an empty request), so the CPUs all go to the training workers.
    trainable = tune.with_resources(trial_driver, {"CPU": 0, "memory": 1})
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
        tuner = tune.Tuner(
            trainable,
            param_space=full_space,
            tune_config=tune.TuneConfig(
                # The limit lives on the generator: Tune ignores max_concurrent_trials (with a
                # warning) when given a generator instance.
                num_samples=cfg.tune.num_samples,
                search_alg=BasicVariantGenerator(random_state=cfg.base.seed,
                                                 max_concurrent=cfg.tune.max_concurrent),
                time_budget_s=cfg.tune.time_budget_s,
                scheduler=ASHAScheduler(time_attr="training_iteration", metric=M.SCORE,
                                        mode=M.SCORE_MODE, max_t=cfg.tune.max_epochs,
                                        grace_period=cfg.tune.grace_period,
                                        reduction_factor=cfg.tune.reduction_factor)),
            run_config=tune.RunConfig(name=name, storage_path=path, storage_filesystem=fs,
                                      callbacks=[TrialLog(uri)],
                                      # Tune's status tables only with `imgclf -v`; the trial
                                      # files and the Prefect table say the same.
                                      verbose=2 if os.environ.get("IMGCLF_VERBOSE") else 0))
    started = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - started
    rows = _trial_rows(results, cfg.tune.max_epochs)
    scored = [r for r in rows if r["best_val_acc"] is not None]
    if not scored:
        raise UserError(f"tune {name}: no trial reported {M.SCORE}; see {exp_path}")
    top = max(scored, key=lambda r: r["best_val_acc"])
    best = {"name": name, "params": top["params"], "best_val_acc": top["best_val_acc"],
            "train_config": trial_config(cfg.base, top["params"], cfg.base.epochs)
            .model_dump(mode="json"), "trials": len(rows),
            "stopped_early": sum(r["stopped_early"] for r in rows),
            "wall_seconds": round(wall, 2), "requested_trials": cfg.tune.num_samples}
    write_json(join(uri, "trials.json"), rows)
    write_json(join(uri, "best.json"), best)
    return TuneOutcome(name, uri, best, rows)
