"""Running a study's trainings: every depth model submitted at once, every race's rung as soon
as the rung below is complete, every confirmation as soon as its race is over. Each training
is a Ray task holding its resources (flows.train.train_task), so the cluster's free places
decide how many run side by side; a config trained twice (a recipe arm that is a depth model)
trains once. Nothing starts that the budget's end would not see finished."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from prefect.futures import PrefectFuture, wait

from cluster.config import TrainConfig
from flows.evaluate import evaluate_task
from flows.train import train_task
from lightning_modules import layout

POLL_S = 1.0
# Work is started only when its estimate with this margin ends before the budget's end: the
# deadline can stop a training only after its first epoch.
SAFETY = 1.3


@dataclass
class Point:
    """One training (and, when tested, its light evaluation on the whole test split)."""

    cfg: TrainConfig
    train: PrefectFuture
    part: str
    estimate_s: float = 0.0  # machine-seconds the plan expects it to take
    evaluate: Optional[PrefectFuture] = None
    submitted: float = field(default_factory=time.monotonic)

    def final(self) -> PrefectFuture:
        return self.evaluate or self.train


class Runner:
    """Submits trainings (each config once) and says when a group of them is done."""

    def __init__(self, end_wall: Optional[float], slots: int = 1) -> None:
        self.end_wall = end_wall  # the deadline every training gets (time.time() seconds)
        self.slots = max(1, slots)
        self.points: dict[str, Point] = {}

    def ever_fits(self, machine_s: float) -> bool:
        """Whether that work could still end in time once nothing is queued before it."""
        return self.end_wall is None or \
            time.time() + SAFETY * machine_s / self.slots <= self.end_wall

    def fits(self, machine_s: float) -> bool:
        """Whether work of `machine_s` machine-seconds, queued behind every point not yet
        done, ends before the budget's end."""
        if self.end_wall is None:
            return True
        queued = sum(p.estimate_s for p in self.points.values() if not done(p))
        return time.time() + SAFETY * (queued + machine_s) / self.slots <= self.end_wall

    def done_count(self) -> int:
        return sum(done(p) for p in self.points.values())

    def taken(self, part: str) -> float:
        """Machine-seconds the part's trainings took (their wall seconds, summed)."""
        from flows.study_results import point_info

        return sum(float(point_info(p).get("wall_seconds") or 0.0)
                   for p in self.points.values() if p.part == part)

    def submit(self, c: TrainConfig, name: str, test: bool, part: str,
               estimate_s: float = 0.0) -> Point:
        if self.end_wall is not None:
            c = c.model_copy(update={"scaling": c.scaling.model_copy(
                update={"deadline": self.end_wall})})
        key = layout.cache_key(c)
        have = self.points.get(key)
        if have is not None:
            if test and have.evaluate is None:
                have.evaluate = _evaluate(have.train, name)
            return have
        fut = train_task.with_options(task_run_name=f"study train {name}").submit(c)
        self.points[key] = Point(c, fut, part, estimate_s,
                                 _evaluate(fut, name) if test else None)
        return self.points[key]


def _evaluate(train: PrefectFuture, name: str) -> PrefectFuture:
    return evaluate_task.with_options(task_run_name=f"study evaluate {name}").submit(
        train, reuse=True, light=True)


def done(point: Point) -> bool:
    return point.final().state.is_final()


def drive(groups: list[tuple[list[Point], Callable[[list[Point]], list[tuple[list[Point], Any]]]]],
          log: Callable[[str], None], runner: Optional[Runner] = None) -> None:
    """Wait on groups of points; when a group is done, its callback runs and may submit new
    groups (the next rung, a confirmation), or an empty group to be asked again at the next
    poll (work waiting for room in the budget). Returns when no group is pending."""
    pending = list(groups)
    last_report, finished = time.monotonic(), 0
    while pending:
        futures = [p.final() for g, _ in pending for p in g]
        if futures:
            wait(futures, timeout=POLL_S)
        else:  # only work waiting for room in the budget
            time.sleep(POLL_S)
        still = []
        for g, then in pending:
            if all(done(p) for p in g):
                finished += bool(g)
                still.extend(then(g))
            else:
                still.append((g, then))
        pending = still
        if time.monotonic() - last_report > 60 and pending:
            last_report = time.monotonic()
            trained = f"{runner.done_count()} of {len(runner.points)} trainings done; " \
                if runner else ""
            log(f"{trained}{finished} group(s) done (depth models, race rungs, "
                f"confirmations), {len(pending)} pending")
