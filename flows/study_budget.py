"""A study's plan: with --budget-s, one short calibration training per (dataset, family)
measures its speed and flows/study_plan.py splits the budget; without, the base's sizes."""
from __future__ import annotations

import time
from typing import Any

from prefect import get_run_logger

from cluster.config import TrainConfig
from flows.config import StudyConfig
from flows.progress import step
from flows.study_plan import Plan, Speed, machine_seconds, plan
from flows.study_race import Size
from flows.train import check_data, train_task
from lightning_modules import metrics as M
from lightning_modules.bundle import INFO
from lightning_modules.nets import FAMILIES, forward_flops
from lightning_modules.store import join, read_json

CALIBRATION_IMAGES = 2000
CALIBRATION_SEED = 10_000_000  # far from the depth, confirmation and race seeds
# A training's seconds outside its own process's work (the task's scheduling, the bundle's
# write): the pipeline's assumed figure (flows.config PipelineConfig.overhead_seconds) where
# nothing was measured; the calibrations measure it (outside_s), never below MIN_OUTSIDE_S.
WARM_OVERHEAD_S = 3.0
MIN_OUTSIDE_S = 0.5
# Kept from the budget for the findings, the figures and the statistics after the last point.
FINISH_S = 20.0
# A point's seconds grow slower than its network's FLOPs (wider layers run at more FLOP/s):
# seconds ∝ FLOPs ** this, fitted to a whole study's points by bench/study_point_cost.py.
FLOPS_EXPONENT = 0.7


def relative_cost(flops: float, base_flops: float) -> float:
    """A point's cost in recipe points, from its network's forward FLOPs and the recipe's."""
    return (flops / base_flops) ** FLOPS_EXPONENT if base_flops > 0 else 1.0


def counts(base: TrainConfig) -> dict[str, int]:
    _, manifest = check_data(base)
    splits = manifest["splits"]
    n = min(splits["train"]["count"], base.max_train_samples or 1 << 62)
    return {"train": n, "val": splits["val"]["count"], "test": splits["test"]["count"]}


def lever_costs(base: TrainConfig, levers: dict[str, list[TrainConfig]]) -> dict[str, list[float]]:
    """Each lever value's cost relative to the recipe, from forward FLOPs."""
    _, manifest = check_data(base)
    shape, classes = tuple(manifest["shape"]), len(manifest["classes"])
    ref = forward_flops(base.model, shape, classes)
    return {lv: [relative_cost(forward_flops(c.model, shape, classes), ref) for c in cfgs]
            for lv, cfgs in levers.items()}


def configured_plan(subjects: dict[str, TrainConfig], cfg: StudyConfig) -> Plan:
    """No budget: depth models and confirmations at the base's size, races up to it."""
    sizes = {k: Size(counts(b)["train"], b.epochs) for k, b in subjects.items()}
    return Plan({k: b.epochs for k, b in subjects.items()}, dict(sizes), dict(sizes),
                {"depth": 0.0, "race": 0.0, "confirm": 0.0}, 0.0,
                ["no budget: every model at the configured size "
                 f"({', '.join(f'{k}: {s.images:,} × {s.epochs}' for k, s in sizes.items())})"])


def budget_plan(subjects: dict[str, TrainConfig], levers: dict[str, dict[str, list]],
                cfg: StudyConfig, started: float) -> Plan:
    """Calibrate every (dataset, family) side by side, then plan what is left of the budget."""
    from cluster.launcher import parallel_slots

    assert cfg.budget_s is not None
    cal_started = time.monotonic()
    # A fresh seed each time: a cached calibration would be a speed measured on another
    # machine, or at another number of threads (which a training's cache key leaves out).
    seed = CALIBRATION_SEED + int(time.time() * 1000) % 1_000_000_000
    futures = {k: train_task.with_options(task_run_name=f"study calibrate {k}").submit(
        b.model_copy(update={"max_train_samples": CALIBRATION_IMAGES, "epochs": 1,
                             "seed": seed, "max_eval_samples": cfg.plan.eval_samples}))
        for k, b in subjects.items()}
    infos = {k: read_json(join(futures[k].result(), INFO)) or {} for k in subjects}
    slots = parallel_slots(next(iter(subjects.values())))
    outside = outside_s(time.monotonic() - cal_started, slots, list(infos.values()))
    speeds = {k: measured(infos[k], counts(b), FAMILIES[b.model.family].epochs,
                          lever_costs(b, levers[k]), outside) for k, b in subjects.items()}
    # The calibrations ran side by side as the points will: their speeds already include
    # what neighbours cost each other, so no further slowdown is applied.
    factor = 1.0
    left = cfg.budget_s - (time.monotonic() - started) - FINISH_S
    out = plan(speeds, machine_seconds(left, slots, factor), cfg.plan.seeds, cfg.plan.eta,
               cfg.plan.eval_samples or 1 << 30)
    out.slots, out.factor = slots, factor
    out.notes.insert(0, f"calibration: {time.monotonic() - cal_started:.0f} s, speeds "
                     f"measured side by side; {slots} training(s) at once; {outside:.1f} s "
                     f"per training outside its process's work; {left:,.0f} s left to plan")
    for note in out.notes:
        step(get_run_logger(), "study plan: %s", note)
    return out


def outside_s(wall_s: float, slots: int, infos: list[dict[str, Any]]) -> float:
    """Seconds a training spends outside its own process's work (the task's scheduling and
    start, the bundle's write), from the calibrations: their wall time on the places they
    held, less what the trainings themselves took, per training. The calibrations' cold start
    is in it: an upper bound, never below MIN_OUTSIDE_S."""
    inside = sum(float(i.get("wall_seconds") or 0.0) for i in infos)
    per = (wall_s * max(1, min(slots, len(infos))) - inside) / max(1, len(infos))
    return max(MIN_OUTSIDE_S, per)


def measured(info: dict[str, Any], n: dict[str, int], epochs: int,
             levers: dict[str, list[float]], outside: float = WARM_OVERHEAD_S) -> Speed:
    """A training's speed from its calibration: the steps' rate, and everything else it took
    (start-up, data loading, validation; `outside` its process) as a fixed overhead."""
    ips = float(info.get("metrics", {}).get(M.IMG_PER_S) or 100.0)
    steps_s = CALIBRATION_IMAGES / ips
    wall = float(info.get("wall_seconds") or info.get("train_seconds") or steps_s)
    return Speed(img_per_s=ips, overhead_s=max(0.0, wall - steps_s) + outside,
                 train_count=n["train"],
                 val_count=n["val"], test_count=n["test"], epochs=epochs, levers=levers)
