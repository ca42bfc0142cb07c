"""Pure planning for the pipeline: run ids, per-branch configs and the tuning budget."""
from __future__ import annotations

from typing import Any, Optional

from cluster.config import TrainConfig, TuneConfig
from flows.config import PipelineConfig, StudyConfig
from lightning_modules.config import ModelConfig
from lightning_modules.layout import cache_key


def run_id(cfg: PipelineConfig, data_keys: dict[str, str]) -> str:
    """From everything that changes the results (not where they go or how they are spread),
    so a re-run with the same inputs is the same run and is published once."""
    return cfg.run_id or "run-" + cache_key(cfg, sorted(data_keys.items()))


def base_train(cfg: PipelineConfig, dataset: str, family: str, seed: int,
               max_train_samples: Optional[int]) -> TrainConfig:
    return TrainConfig(dataset=dataset, store=cfg.store, model=ModelConfig(family=family),
                       scaling=cfg.scaling, epochs=cfg.epochs, seed=seed,
                       max_train_samples=max_train_samples)


def tune_config(cfg: PipelineConfig, dataset: str, family: str, trials: int) -> TuneConfig:
    return TuneConfig(base=base_train(cfg, dataset, family, cfg.seed, cfg.tune_train_samples),
                      space=cfg.space, tune=cfg.tune.model_copy(update={"num_samples": trials}))


def final_config(cfg: PipelineConfig, best_train_config: Optional[dict[str, Any]], dataset: str,
                 family: str, seed: int) -> TrainConfig:
    """The tuned levers (model and optimiser) with the pipeline's epochs, data size and seed."""
    base = base_train(cfg, dataset, family, seed, cfg.max_train_samples)
    if best_train_config is None:
        return base
    tuned = TrainConfig(**best_train_config)
    return base.model_copy(update={"model": tuned.model, "optim": tuned.optim})


def study_config(cfg: PipelineConfig, dataset: str, family: str) -> StudyConfig:
    return StudyConfig(base=base_train(cfg, dataset, family, cfg.seed, cfg.max_train_samples),
                       plan=cfg.study_plan)


def plan_trials(cfg: PipelineConfig, branches: int) -> tuple[int, Optional[str]]:
    """Trials for a branch's tuning: as asked, or fewer when the run's time budget is short,
    at `trial_seconds_guess` per trial. Planned before any branch runs (they all start at
    once), so a re-run plans the same and hits the cache."""
    asked = cfg.tune.num_samples
    if cfg.run_time_budget_s is None:
        return asked, None
    share = cfg.tune_share * cfg.run_time_budget_s / branches
    per_trial = cfg.trial_seconds_guess
    n = max(1, min(asked, int(share // per_trial)))
    if n == asked:
        return n, None
    return n, (f"time budget: {n} of {asked} trials ({share:.0f} s of tuning per model at "
               f"~{per_trial:.0f} s per trial)")
