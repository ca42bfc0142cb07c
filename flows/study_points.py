"""The trainings of a study, as configs: each (dataset, family)'s recipe, its depth models, a
lever value's race point and its confirmation arms. Pure: nothing trains here."""
from __future__ import annotations

from typing import Any

from cluster.config import TrainConfig, apply_levers, lever_value
from flows.config import StudyConfig, StudyPlan
from flows.study_race import Size
from lightning_modules.nets import FAMILIES

# Learning rates are raced around each family's own (SGD at 0.375 and Adam at 0.002 share no
# useful absolute grid); factor 1 is the recipe's own value.
LR_FACTORS = (0.1, 0.3, 1.0, 3.0, 10.0)
RACE_SEED = 1000  # race points train on seeds base + 1000 + ..., never a depth or confirm seed


def subjects(cfg: StudyConfig) -> dict[str, TrainConfig]:
    """The (dataset, family) studied, keyed "dataset/family": the base alone, or each dataset
    × family from the family's recipe on the base's data size, epochs, seed and scaling."""
    from flows.pipeline_plan import recipe_train

    base = cfg.base.model_copy(update={"max_eval_samples": None})
    if cfg.datasets is None and cfg.families is None:
        return {f"{base.dataset}/{base.model.family}": base}
    return {f"{ds}/{fam}": recipe_train(base, ds, fam)
            for ds in cfg.datasets or [base.dataset]
            for fam in cfg.families or [base.model.family]}


def grid(base: TrainConfig, plan: StudyPlan, lever: str) -> list[Any]:
    """The lever's values, the recipe's among them (added in order where the grid lacks it)."""
    recipe = lever_value(base, lever)
    if lever == "structure":
        values = list(plan.structure_grid or FAMILIES[base.model.family].cpu_presets())
    elif lever == "lr" and plan.lr_grid is None:
        values = [recipe if f == 1 else float(f"{recipe * f:.4g}") for f in LR_FACTORS]
    else:
        values = list(getattr(plan, f"{lever}_grid"))
    if recipe not in values:
        values.append(recipe)
        if all(isinstance(v, (int, float)) for v in values):
            values.sort()
    return values


def lever_config(base: TrainConfig, plan: StudyPlan, lever: str, value: Any) -> TrainConfig:
    """The recipe with one lever set. A batch size scales the learning rate by the stated rule
    (linear or square root of the batch ratio), so that every batch trains the same epochs
    at a comparable step size."""
    levers: dict[str, Any] = {lever: value}
    if lever == "batch_size":
        power = 1.0 if plan.batch_lr_rule == "linear" else 0.5
        ratio = value / base.optim.batch_size
        levers["lr"] = float(f"{base.optim.lr * ratio ** power:.4g}")
    return apply_levers(base, levers)


def sized(c: TrainConfig, size: Size, count: int, seed: int, eval_samples: Any = None
          ) -> TrainConfig:
    """c at a size (all its `count` images, as c's own cap has them, or a seeded subset), a
    seed and a validation sample."""
    return c.model_copy(update={
        "epochs": size.epochs, "seed": seed, "max_eval_samples": eval_samples,
        "max_train_samples": c.max_train_samples if size.images >= count else size.images})


def seeds(cfg: StudyConfig) -> list[int]:
    """The depth models' and the confirmations' seeds (the races use others)."""
    return [cfg.base.seed + s for s in range(cfg.plan.seeds)]


def race_seed(cfg: StudyConfig) -> int:
    return cfg.base.seed + RACE_SEED


def batch_rule_note(plan: StudyPlan) -> str:
    rule = "linearly" if plan.batch_lr_rule == "linear" else "with its square root"
    return f"the batch-size lever scales the learning rate {rule} in the batch ratio"
