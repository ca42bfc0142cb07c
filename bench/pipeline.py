"""The whole pipeline as a user runs it (`imgclf pipeline --profile default`, what `make run`
does), timed from outside, then read back from its store: wall time, the share of it spent in
training steps, each tuning trial's start-up, how the budget went, and the accuracy table
against each family's textbook figure (the targets of issue 15). Prints JSON.

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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# What a model of each family should reach on a 10-minute CPU run (issue 15's targets).
TARGETS = {"mnist": {"bp": 0.97, "dnn": 0.975, "cnn": 0.99, "dcnn": 0.99},
           "fashion-mnist": {"bp": 0.86, "dnn": 0.865, "cnn": 0.90, "dcnn": 0.90}}
BEST_TARGETS = {"mnist": 0.992, "fashion-mnist": 0.91}


def _json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def trial_rows(store: str) -> list[dict]:
    """Every tuning trial the run's store holds (the bench starts from an empty store)."""
    return [row for p in glob.glob(os.path.join(store, "tuning", "*", "*", "*", "trials.json"))
            for row in _json(p)]


def summary(store: str, wall: float) -> dict:
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
            "budget": comp["notes"], "accuracy": acc}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--store", default=None, help="default: a fresh temporary folder")
    args = ap.parse_args()
    store = args.store or tempfile.mkdtemp(prefix="bench-pipeline-")
    cli = [sys.executable, "-m", "flows.cli", "pipeline", "--profile", args.profile,
           "--store", store]
    t = time.perf_counter()
    proc = subprocess.run(cli, cwd=Path(__file__).resolve().parents[1])
    wall = time.perf_counter() - t
    if proc.returncode:
        sys.exit(f"the pipeline failed (exit {proc.returncode})")
    print(json.dumps({"profile": args.profile, "cpus": os.cpu_count(),
                      **summary(store, wall)}, indent=2))


if __name__ == "__main__":
    main()
