"""A study that must end within --budget-s: one short calibration training per (dataset,
family) measures its speed, then flows/study_plan.py sizes every point of it alike."""
from __future__ import annotations

import time
from dataclasses import dataclass

from prefect import get_run_logger

from flows.config import StudyConfig
from flows.progress import step
from flows.study_plan import Speed, point_seconds, shape, slowdown
from flows.evaluate import evaluate_task
from flows.train import check_data, train_task
from lightning_modules import layout
from lightning_modules import metrics as M
from lightning_modules.bundle import INFO
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
                  distinct: dict[int, int]) -> Budget:
    """subs resized so that all their points (distinct[i] trainings for subs[i]) end within
    what is left of budget_s, with one note per study."""
    from cluster.launcher import parallel_slots

    log = get_run_logger()
    names = [f"study calibrate {s.base.dataset}/{s.base.model.family}" for s in subs]
    cal_started = time.monotonic()
    futures = [evaluate_task.with_options(task_run_name=name).submit(
        train_task.with_options(task_run_name=name).submit(calibration(s).base), light=True)
        for s, name in zip(subs, names)]
    speeds = {}
    for i, (sub, fut) in enumerate(zip(subs, futures)):
        metrics = read_json(fut.result()) or {}
        info = read_json(join(metrics["bundle"], INFO)) or {}
        _, manifest = check_data(sub.base)
        count = min(manifest["splits"]["train"]["count"], sub.base.max_train_samples or 1 << 62)
        speeds[str(i)] = measured(info, metrics, count, distinct[i])
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
        point_s[i] * distinct[i] for i in point_s) / max(1, slots)
    return Budget(out, notes, point_s, planned)


def measured(info: dict, metrics: dict, train_count: int, points: int) -> Speed:
    """A point's speed from its calibration: the training steps' rate, and everything else it
    took (start-up, data loading, validation, the test evaluation) as a fixed overhead."""
    ips = float(info.get("metrics", {}).get(M.IMG_PER_S) or 100.0)
    steps_s = CALIBRATION_IMAGES / ips
    training = float(info.get("wall_seconds") or info.get("train_seconds") or steps_s)
    overhead = max(0.0, training - steps_s) + float(metrics.get("eval_seconds") or 0.0)
    return Speed(img_per_s=ips, overhead_s=overhead, train_count=train_count, points=points)


def distinct_points(cfgs: dict) -> int:
    return len({layout.cache_key(c) for c in cfgs.values()})
