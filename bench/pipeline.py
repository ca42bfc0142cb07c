"""The whole pipeline as a user runs it (`imgclf pipeline --profile default`, what `make run`
does), timed from outside, then read back from its store: wall time, the share of it spent in
training steps, each tuning trial's start-up, how the budget went, the accuracy table against
each family's floor, and each final training's FLOP/s as a share of the fp32 and bf16 matmul
peaks measured in the same run. Prints JSON and writes it to bench/results/pipeline-<profile>.json.

    python bench/pipeline.py [--profile default] [--store DIR]"""
from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_results import matmul_peak, write

# The floors of each family (test accuracy) on a 15-minute run of a 2-core machine.
TARGETS = {"mnist": {"bp": 0.98, "dnn": 0.985, "cnn": 0.993, "dcnn": 0.995},
           "fashion-mnist": {"bp": 0.885, "dnn": 0.89, "cnn": 0.925, "dcnn": 0.94},
           "cifar10-jpeg": {"bp": 0.50, "dnn": 0.55, "cnn": 0.75, "dcnn": 0.92}}
BEST_TARGETS = {"mnist": 0.995, "fashion-mnist": 0.94, "cifar10-jpeg": 0.92}


def flop_shares(comp: dict, peaks: dict[str, float]) -> dict:
    """Each final training's FLOP/s (3 × forward FLOPs per image × measured img/s) as a share
    of each peak."""
    out: dict = {}
    for ds, fams in comp["cells"].items():
        for fam, c in fams.items():
            if c["status"] != "ok":
                continue
            info = _json(os.path.join(c["bundle"], "bundle.json"))
            rate = info["metrics"].get("perf/train_img_per_s") or 0.0
            flops = 3 * c["flops_per_image"] * rate
            out.setdefault(ds, {})[fam] = {
                "train_img_per_s": round(rate, 1), "gflop_s": round(flops / 1e9, 1),
                "precision": info["config"]["compute"]["precision"],
                **{f"share_of_{k}": round(flops / v, 3) for k, v in peaks.items()}}
    return out


def _json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def trial_rows(store: str) -> list[dict]:
    """Every tuning trial the run's store holds (the bench starts from an empty store)."""
    return [row for p in glob.glob(os.path.join(store, "tuning", "*", "*", "*", "trials.json"))
            for row in _json(p)]


def summary(store: str, wall: float, peaks: dict[str, float]) -> dict:
    run = max(glob.glob(os.path.join(store, "runs", "run-*")), key=os.path.getmtime)
    comp = _json(os.path.join(run, "comparison.json"))
    trials = trial_rows(store)
    trial_steps = sum(max(0.0, (t.get("seconds") or 0) - (t.get("startup_s") or 0))
                      for t in trials)
    final_steps = sum(c.get("train_seconds") or 0 for fams in comp["cells"].values()
                      for c in fams.values() if c["status"] == "ok")
    starts = sorted(t["startup_s"] for t in trials if t.get("startup_s") is not None)
    acc = {}
    for ds, fams in comp["cells"].items():
        acc[ds] = {f: {"test_acc": c.get("test/acc"), "target": TARGETS.get(ds, {}).get(f),
                       "met": (c.get("test/acc") or 0) >= TARGETS.get(ds, {}).get(f, 0)}
                   for f, c in fams.items()}
        best = max((c.get("test/acc") or 0) for c in fams.values())
        acc[ds]["best"] = {"test_acc": best, "target": BEST_TARGETS.get(ds),
                           "met": best >= BEST_TARGETS.get(ds, 0)}
    return {"wall_s": round(wall, 1),
            "training_steps_s": {"final": round(final_steps, 1), "tuning": round(trial_steps, 1)},
            # One training at a time on a machine whose CPUs one run takes (the 2-core case).
            "share_in_training_steps": round((final_steps + trial_steps) / wall, 3),
            "trials": len(trials),
            "trial_startup_s": {"median": round(statistics.median(starts), 2) if starts else None,
                                "max": round(starts[-1], 2) if starts else None},
            "budget": comp["notes"], "accuracy": acc, "flops": flop_shares(comp, peaks)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--store", default=None, help="default: a fresh temporary folder")
    args = ap.parse_args()
    store = args.store or tempfile.mkdtemp(prefix="bench-pipeline-")
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    peaks = {"fp32_peak": matmul_peak(torch.float32), "bf16_peak": matmul_peak(torch.bfloat16)}
    cli = [sys.executable, "-m", "flows.cli", "pipeline", "--profile", args.profile,
           "--store", store]
    t = time.perf_counter()
    proc = subprocess.run(cli, cwd=Path(__file__).resolve().parents[1])
    wall = time.perf_counter() - t
    if proc.returncode:
        sys.exit(f"the pipeline failed (exit {proc.returncode})")
    print(write(f"pipeline-{args.profile}", {
        "command": f"python bench/pipeline.py --profile {args.profile}",
        "peaks_gflop_s": {k: round(v / 1e9, 1) for k, v in peaks.items()},
        **summary(store, wall, peaks)}))


if __name__ == "__main__":
    main()
