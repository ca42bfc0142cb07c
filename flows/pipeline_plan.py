"""Pure planning for the pipeline: run ids, per-branch configs and the tuning budget."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from cluster.config import TrainConfig, TuneConfig, apply_levers
from flows.config import PipelineConfig, StudyConfig
from lightning_modules.config import ModelConfig, OptimConfig
from lightning_modules.layout import cache_key
from lightning_modules.nets import FAMILIES


def run_id(cfg: PipelineConfig, data_keys: dict[str, str]) -> str:
    """From everything that changes the results (not where they go or how they are spread),
    so a re-run with the same inputs is the same run and is published once."""
    return cfg.run_id or "run-" + cache_key(cfg, sorted(data_keys.items()))


def base_train(cfg: PipelineConfig, dataset: str, family: str, seed: int,
               max_train_samples: Optional[int]) -> TrainConfig:
    """The family's recipe (FAMILIES[...].recipe) on the pipeline's data, seed and scaling."""
    base = TrainConfig(store=cfg.store, scaling=cfg.scaling, epochs=cfg.epochs or 1, seed=seed,
                       max_train_samples=max_train_samples, tracking=cfg.tracking)
    return recipe_train(base, dataset, family, cfg.structures.get(family))


def recipe_train(base: TrainConfig, dataset: str, family: str,
                 structure: Optional[str] = None) -> TrainConfig:
    """base (store, scaling, epochs, seed, data size) on `dataset` with the family's recipe:
    its optimiser settings and levers (FAMILIES[...].optim and .recipe)."""
    fam = FAMILIES[family]
    base = base.model_copy(update={"dataset": dataset, "model": ModelConfig(family=family),
                                   "optim": OptimConfig(**{**OptimConfig().model_dump(),
                                                           **dict(fam.optim)})})
    levers = dict(fam.recipe)
    if structure:
        levers["structure"] = structure
    return apply_levers(base, levers)


def tune_config(cfg: PipelineConfig, dataset: str, family: str, trials: int) -> TuneConfig:
    return TuneConfig(base=base_train(cfg, dataset, family, cfg.seed, cfg.tune_train_samples),
                      space=cfg.space, tune=cfg.tune.model_copy(update={"num_samples": trials}))


def final_config(cfg: PipelineConfig, best_train_config: Optional[dict[str, Any]], dataset: str,
                 family: str, seed: int, epochs: Optional[int] = None,
                 images: Optional[int] = None) -> TrainConfig:
    """The tuned levers (model and optimiser) with the pipeline's data size (or the plan's
    subset of it) and seed, and the planned epochs (or the config's)."""
    base = base_train(cfg, dataset, family, seed, images or cfg.max_train_samples)
    if epochs is not None:
        base = base.model_copy(update={"epochs": epochs})
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
    share = cfg.tune_share * cfg.run_time_budget_s / max(1, branches)
    per_trial = cfg.trial_seconds_guess
    n = max(1, min(asked, int(share // per_trial)))
    if n == asked:
        return n, None
    return n, (f"time budget: {n} of {asked} trials ({share:.0f} s of tuning per model at "
               f"~{per_trial:.0f} s per trial)")


@dataclass(frozen=True)
class BranchCost:
    """A branch's final training as the budget planner sees it, from its tuning's best trial:
    seconds per epoch on the full training set (validation included) and per training."""

    epoch_s: float
    fixed_s: float
    runs: int = 1  # one training per seed
    val_s: float = 0.0  # the part of epoch_s that validates (a subset of images keeps it)


def branch_cost(img_per_s: float, n_train: int, n_val: int, runs: int, overhead_s: float,
                n_test: int = 0, eval_passes: int = 1) -> BranchCost:
    """Forward passes (validation, the evaluation's `eval_passes` per test image: 6 with
    test-time augmentation) are taken at three times the training rate."""
    evaluation = n_test * eval_passes / (3 * img_per_s)
    return BranchCost(epoch_s=n_train / img_per_s + n_val / (3 * img_per_s),
                      fixed_s=overhead_s + evaluation, runs=runs, val_s=n_val / (3 * img_per_s))


def plan_epochs(costs: dict[str, BranchCost], seconds: float, slots: int, max_epochs: int
                ) -> tuple[dict[str, int], str]:
    """Epochs per branch so that all final trainings fit `seconds` of wall time on `slots`
    trainings at once: an equal share of time each (so cheap families get more epochs), a
    branch that needs less than its share at `max_epochs` gives the rest to the others, and
    time left by rounding down buys single epochs for the branches with the fewest. At least
    one epoch each: when even that does not fit, the note says the budget is overrun."""
    capacity = seconds * max(1, slots) - sum(c.fixed_s * c.runs for c in costs.values())
    per_epoch = {k: c.epoch_s * c.runs for k, c in costs.items()}
    epochs: dict[str, int] = {}
    open_ = dict(per_epoch)
    left = capacity
    while open_:  # water-filling: settle the branches whose cap is below the equal share
        share = left / len(open_)
        capped = [k for k, e in open_.items() if e * max_epochs <= share]
        if not capped:
            break
        for k in capped:
            epochs[k] = max_epochs
            left -= open_.pop(k) * max_epochs
    for k, e in open_.items():
        epochs[k] = max(1, min(max_epochs, int(left / len(open_) // e)))
    spent = sum(per_epoch[k] * n for k, n in epochs.items())
    for k in sorted(open_, key=lambda k: (epochs[k], per_epoch[k])):  # the rounding's rest
        if epochs[k] < max_epochs and spent + per_epoch[k] <= capacity:
            epochs[k] += 1
            spent += per_epoch[k]
    total = spent + sum(c.fixed_s * c.runs for c in costs.values())
    note = (f"budget: {seconds:.0f} s left for the final trainings × {max(1, slots)} at once; "
            f"planned {total / max(1, slots):.0f} s of it")
    if spent > capacity:
        note += " (over: every model gets at least one epoch)"
    return epochs, note


MIN_FINAL_IMAGES = 1000  # a final model on fewer images says little


def plan_images(costs: dict[str, BranchCost], seconds: float, slots: int,
                n_train: dict[str, int]) -> tuple[dict[str, Optional[int]], Optional[str]]:
    """When one epoch of every branch on all its images does not fit, a seeded subset of the
    dearest branches' training images (one epoch each), water-filled: a branch whose epoch
    costs less than an equal share keeps all its images, the others share the rest alike
    (never fewer than MIN_FINAL_IMAGES). None: all images. The note says what was shrunk."""
    capacity = seconds * max(1, slots) - sum(c.fixed_s * c.runs for c in costs.values())
    steps = {k: (c.epoch_s - c.val_s) * c.runs for k, c in costs.items()}
    val = {k: c.val_s * c.runs for k, c in costs.items()}
    if sum(steps.values()) + sum(val.values()) <= capacity:
        return {k: None for k in costs}, None
    out: dict[str, Optional[int]] = {}
    open_, left = dict(steps), max(0.0, capacity - sum(val.values()))
    while open_:
        share = left / len(open_)
        settled = [k for k, v in open_.items() if v <= share]
        if not settled:
            break
        for k in settled:
            out[k] = None
            left -= open_.pop(k)
    for k, v in open_.items():
        part = (left / len(open_)) / v if v > 0 else 1.0
        out[k] = min(n_train[k], max(MIN_FINAL_IMAGES, int(part * n_train[k])))
    shrunk = [f"{k} {out[k]:,} of {n_train[k]:,}" for k in costs if out[k] is not None]
    return out, ("one epoch on all training images does not fit: a seeded subset for "
                 f"{', '.join(shrunk)} images")
