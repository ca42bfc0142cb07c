"""A study that must end within --budget-s: one short calibration training per (dataset,
family) measures its speed, then flows/study_plan.py sizes every point of it alike."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Hashable

from prefect import get_run_logger

from flows.config import StudyConfig
from flows.progress import step
from flows.study_plan import Speed, point_seconds, relative_cost, shape, slowdown
from flows.evaluate import evaluate_task
from flows.train import check_data, train_task
from lightning_modules import layout
from lightning_modules import metrics as M
from lightning_modules.bundle import INFO
from lightning_modules.nets import forward_flops
from lightning_modules.store import join, read_json

CALIBRATION_IMAGES = 2000


def calibration(sub: StudyConfig) -> StudyConfig:
    """The study's base on a small sample for one epoch: a speed measurement."""
    return sub.model_copy(update={"base": sub.base.model_copy(update={
        "max_train_samples": CALIBRATION_IMAGES, "epochs": 1})})


@dataclass
class Budget:
    subs: list[StudyConfig]      # resized to fit
    notes: list[str]             # why, one per study
    point_s: dict[int, float]    # a point's planned seconds per study (longest submitted first)
    planned_s: float             # the study's planned end, seconds from its start


def fit_to_budget(subs: list[StudyConfig], budget_s: float, started: float,
                  distinct: dict[int, tuple[int, float]]) -> Budget:
    """subs resized so that all their points (distinct[i]: subs[i]'s trainings and their cost
    in base points) end within what is left of budget_s, with one note per study."""
    from cluster.launcher import parallel_slots

    log = get_run_logger()
    cal_started = time.monotonic()
    futures = {i: calibrate(subs[i]) for i in heaviest_first(subs)}
    speeds = {}
    for i, sub in enumerate(subs):
        metrics = read_json(futures[i].result()) or {}
        info = read_json(join(metrics["bundle"], INFO)) or {}
        _, manifest = check_data(sub.base)
        count = min(manifest["splits"]["train"]["count"], sub.base.max_train_samples or 1 << 62)
        speeds[str(i)] = measured(info, metrics, count, *distinct[i])
    slots = parallel_slots(subs[0].base)
    factor = slowdown(speeds, CALIBRATION_IMAGES, time.monotonic() - cal_started, slots)
    left = budget_s - (time.monotonic() - started)
    shapes = shape(speeds, left, slots, subs[0].base.epochs, factor)
    out, notes, point_s = [], [], {}
    for i, sub in enumerate(subs):
        s = shapes[str(i)]
        note = s.note.replace(f"{i}:", f"{sub.base.dataset}/{sub.base.model.family}:", 1)
        step(log, "study budget: %s", note)
        notes.append(note)
        point_s[i] = point_seconds(speeds[str(i)], s)
        out.append(sub.model_copy(update={"base": sub.base.model_copy(update={
            "max_train_samples": s.images, "epochs": s.epochs})}))
    planned = time.monotonic() - started + factor * sum(
        point_s[i] * distinct[i][1] for i in point_s) / max(1, slots)
    return Budget(out, notes, point_s, planned)


def calibrate(sub: StudyConfig) -> Any:
    name = f"study calibrate {sub.base.dataset}/{sub.base.model.family}"
    return evaluate_task.with_options(task_run_name=name).submit(
        train_task.with_options(task_run_name=name).submit(calibration(sub).base), light=True)


def heaviest_first(subs: list[StudyConfig]) -> list[int]:
    """Study indices by their recipe's forward FLOPs, largest first: calibrations then run
    beside others of their weight, as the study's points will (the longest go first), and a
    point beside a heavy neighbour trains slower than beside a light one."""
    def flops(sub: StudyConfig) -> int:
        _, manifest = check_data(sub.base)
        return forward_flops(sub.base.model, tuple(manifest["shape"]), len(manifest["classes"]))
    return sorted(range(len(subs)), key=lambda i: -flops(subs[i]))


def measured(info: dict, metrics: dict, train_count: int, points: int, work: float) -> Speed:
    """A point's speed from its calibration: the training steps' rate, and everything else it
    took (start-up, data loading, validation, the test evaluation) as a fixed overhead."""
    ips = float(info.get("metrics", {}).get(M.IMG_PER_S) or 100.0)
    steps_s = CALIBRATION_IMAGES / ips
    training = float(info.get("wall_seconds") or info.get("train_seconds") or steps_s)
    overhead = max(0.0, training - steps_s) + float(metrics.get("eval_seconds") or 0.0)
    return Speed(img_per_s=ips, overhead_s=overhead, train_count=train_count, points=points,
                 work=work)


def relative_costs(sub: StudyConfig, cfgs: dict[Hashable, Any]) -> dict[Hashable, float]:
    """Each point's cost in base points, from its network's forward FLOPs (a larger structure
    costs more than the recipe the calibration measured)."""
    _, manifest = check_data(sub.base)
    shape_, classes = tuple(manifest["shape"]), len(manifest["classes"])
    flops: dict[str, int] = {}

    def of(model: Any) -> int:
        key = model.model_dump_json()
        if key not in flops:
            flops[key] = forward_flops(model, shape_, classes)
        return flops[key]
    base = of(sub.base.model)
    return {k: relative_cost(of(c.model), base) for k, c in cfgs.items()}


def distinct_points(cfgs: dict[Hashable, Any], rel: dict[Hashable, float]) -> tuple[int, float]:
    """(distinct trainings, their cost in base points): a point shared by levers runs once."""
    by_key = {layout.cache_key(c): rel[k] for k, c in cfgs.items()}
    return len(by_key), sum(by_key.values())
