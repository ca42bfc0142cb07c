"""Fault drills, injected the way Ray's own tests do: the test hands Ray Train a wrapped
per-worker function (pickled by value, so workers need not import tests/) that adds a
callback inside the worker process. Production code has no fault parameter."""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable

import cloudpickle
import lightning.pytorch as pl

import cluster.launcher


class FailOnce(pl.Callback):
    """Kill this worker process once, early in the second epoch (unless the marker file exists
    already), and record each attempt's first step (`.starts`) and the latest step begun
    (`.step`), so a test can count the steps a failure wasted."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def on_train_start(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_rank == 0:  # the step each attempt starts from: 0, then the resume
            with open(self.marker + ".starts", "a") as f:
                f.write(f"{trainer.global_step}\n")

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_rank == 0:
            with open(self.marker + ".step", "w") as f:
                f.write(str(trainer.global_step))
        if trainer.current_epoch >= 1 and trainer.global_rank == trainer.world_size - 1 \
                and not os.path.exists(self.marker):
            with open(self.marker, "w") as f:
                f.write(str(trainer.global_step))
            # Let the controller collect the epoch's checkpoint report (it polls workers).
            time.sleep(3)
            os._exit(1)


def with_fail_once(marker: str) -> Callable[[dict], None]:
    """The real per-worker function, with FailOnce added to its callbacks in the worker."""
    def loop(config: dict) -> None:
        import cluster.train_worker as worker

        real = worker.callbacks
        worker.callbacks = lambda cfg: [*real(cfg), FailOnce(marker)]
        try:
            worker.train_loop_per_worker(config)
        finally:
            worker.callbacks = real
    return loop


def inject_fail_once(monkeypatch: Any, marker: str) -> None:
    """Make every Ray Train run of this test run the drill."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(cluster.launcher, "train_loop_per_worker", with_fail_once(marker))
