"""Tuning benchmark: Ray Tune with ASHA against the same trials run back to back without Tune.

Run: `python bench/tune.py [--trials 8] [--epochs 2] [--samples N]`. Both sides train the same
sampled configs (MNIST `cnn`); the Tune side may stop weak trials early (ASHA). Prints JSON: wall
time of each, their ratio, trials stopped early, and mean CPU utilisation of each phase.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from bench_results import command, write
from cluster.config import (
    TuneConfig,
    apply_levers,
)
from flows.config import PrepConfig
from flows.prep.build import prepare
from flows.train import train_model as train
from flows.tune import tune_model as run_tune

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat (Linux)."""
    fields = [int(v) for v in open("/proc/stat").readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def timed(fn):
    """(result, wall seconds, mean system-wide CPU utilisation in % over the call)."""
    b0, t0 = cpu_ticks()
    start = time.perf_counter()
    out = fn()
    b1, t1 = cpu_ticks()
    return out, time.perf_counter() - start, round(100 * (b1 - b0) / max(1, t1 - t0), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--samples", type=int, default=None, help="training subset (default: all)")
    args = ap.parse_args()
    store = tempfile.mkdtemp(prefix="bench-tune-")
    prepare(PrepConfig(dataset="mnist", source=str(SHARED / "mnist"), store=store))
    cfg = TuneConfig(base={"dataset": "mnist", "store": store, "model": {"family": "cnn"},
                           "max_train_samples": args.samples},
                     tune={"num_samples": args.trials, "max_epochs": args.epochs})
    tuned, tune_s, tune_cpu = timed(lambda: run_tune(cfg))
    configs = [apply_levers(cfg.base, r["params"], epochs=args.epochs) for r in tuned.trials]
    _, plain_s, plain_cpu = timed(lambda: [train(c) for c in configs])
    print(write("tune", {
        "command": command(), "trials": args.trials, "epochs": args.epochs,
        "samples": args.samples, "tune_wall_s": round(tune_s, 1),
        "back_to_back_wall_s": round(plain_s, 1),
        "ratio_tune_over_plain": round(tune_s / plain_s, 3),
        "stopped_early": tuned.best.stopped_early, "tune_cpu_percent": tune_cpu,
        "back_to_back_cpu_percent": plain_cpu}))
    shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    main()
