"""Time to accuracy, in epochs and seconds, through the real pipeline code (Ray Train + Lightning).

Run: `python bench/time_to_accuracy.py [--cases mnist-cnn,fashion-dcnn,cifar-dcnn]`. Each case
prepares its dataset from ../shared/datasets, trains on a local Ray with the stated config, and
evaluates on the test split. Prints JSON: epochs, training seconds, test accuracy, goal, met.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cluster.config import TrainConfig  # noqa: E402
from flows.config import PrepConfig  # noqa: E402
from flows.evaluate import evaluate_bundle  # noqa: E402
from flows.prep.build import prepare  # noqa: E402
from flows.train import train_model as train  # noqa: E402
from lightning_modules import metrics as M  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
CASES = {
    "mnist-cnn": dict(prep=dict(dataset="mnist", source=str(SHARED / "mnist")),
                      train=dict(dataset="mnist", epochs=1, model={"family": "cnn"},
                                 optim={"batch_size": 64, "lr": 2e-3}), goal=0.99),
    "fashion-dcnn": dict(prep=dict(dataset="fashion-mnist", source=str(SHARED / "fashion-mnist")),
                         train=dict(dataset="fashion-mnist", epochs=5,
                                    model={"family": "dcnn", "preset": "small"},
                                    optim={"batch_size": 128, "lr": 4e-3}), goal=0.93),
    "cifar-dcnn": dict(prep=dict(dataset="imagefolder", source=str(SHARED / "cifar10-jpeg"),
                                 name="cifar10-jpeg"),
                       train=dict(dataset="cifar10-jpeg", epochs=10,
                                  model={"family": "dcnn", "preset": "medium"},
                                  optim={"batch_size": 256, "lr": 4e-3, "label_smoothing": 0.2}),
                       goal=0.90),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--store", default=None, help="default: a fresh temporary folder")
    args = ap.parse_args()
    store = args.store or tempfile.mkdtemp(prefix="bench-tta-")
    out = {"cpus": os.cpu_count(), "cases": {}}
    for name in args.cases.split(","):
        case = CASES[name]
        prepare(PrepConfig(store=store, **case["prep"]))
        res = train(TrainConfig(store=store, **case["train"]))
        m = evaluate_bundle(res.bundle_uri)
        out["cases"][name] = {"epochs": case["train"]["epochs"], "config": case["train"],
                              "train_seconds": res.info["train_seconds"],
                              "test_acc": round(m[M.TEST_ACC], 4), "goal": case["goal"],
                              "met": m[M.TEST_ACC] >= case["goal"]}
        print(json.dumps({name: out["cases"][name]}), file=sys.stderr)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
