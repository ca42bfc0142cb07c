"""Time to accuracy of each family's recipe (the pipeline's starting point), through the real
training path (Lightning in this process, as `imgclf train` with no Ray cluster) and the real
evaluation (test split, with test-time augmentation where the training augmented).

    python bench/time_to_accuracy.py [--cases cifar-dcnn,cifar-cnn] [--epochs N]

Each case prepares its dataset from ../shared/datasets, trains the family's recipe (a case may
set the structure and epochs), evaluates, and compares with the family's floor and the field's
published figure. Writes bench/results/time_to_accuracy.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from bench_results import write
from flows.config import DatasetSpec, PipelineConfig, PrepConfig
from flows.evaluate import evaluate_bundle
from flows.pipeline_plan import base_train
from flows.prep.build import prepare
from flows.train import train_model
from lightning_modules import metrics as M

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
PREP = {"mnist": dict(dataset="mnist", source=str(SHARED / "mnist")),
        "fashion-mnist": dict(dataset="fashion-mnist", source=str(SHARED / "fashion-mnist")),
        "cifar10-jpeg": dict(dataset="imagefolder", source=str(SHARED / "cifar10-jpeg"),
                             name="cifar10-jpeg")}
# (dataset, family, structure or None for the recipe's, epochs, floor, the field's figure)
CASES = {
    "cifar-dcnn": ("cifar10-jpeg", "dcnn", None, 8, 0.92,
                   "airbench94: 0.9401 on CIFAR-10 in 9.9 epochs (A100, 3.83 s)"),
    "cifar-dcnn-large": ("cifar10-jpeg", "dcnn", "large", 10, 0.94,
                         "airbench94: 0.9401 on CIFAR-10 in 9.9 epochs (A100, 3.83 s)"),
    "cifar-cnn": ("cifar10-jpeg", "cnn", None, 6, 0.75, "LeNet-5 class: about 0.75"),
    "fashion-dcnn": ("fashion-mnist", "dcnn", None, 4, 0.94,
                     "Fashion-MNIST benchmark: ResNet-class 0.93-0.95"),
    "mnist-dcnn": ("mnist", "dcnn", None, 2, 0.995, "0.995-0.997 for small CNNs"),
}


def run_case(store: str, name: str, epochs: int | None) -> dict:
    dataset, family, structure, default_epochs, floor, field = CASES[name]
    prepare(PrepConfig(store=store, **PREP[dataset]))
    pipe = PipelineConfig(datasets=[DatasetSpec(dataset="mnist")], store=store,
                          structures={family: structure} if structure else {})
    cfg = base_train(pipe, dataset, family, 0, None).model_copy(
        update={"epochs": epochs or default_epochs})
    res = train_model(cfg)
    m = evaluate_bundle(res.bundle_uri)
    acc = m[M.TEST_ACC]
    return {"dataset": dataset, "family": family, "structure": cfg.model.preset,
            "epochs": cfg.epochs, "train_seconds": res.info["train_seconds"],
            "train_img_per_s": round(res.info["metrics"].get("perf/train_img_per_s", 0), 1),
            "val_acc_by_epoch": [round(h.get(M.SCORE, 0), 4) for h in res.info["history"]],
            "test_acc": round(acc, 4), "floor": floor, "met": acc >= floor, "field": field,
            "optim": cfg.optim.model_dump()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="cifar-dcnn,cifar-cnn")
    ap.add_argument("--epochs", type=int, default=None, help="override every case's epochs")
    ap.add_argument("--store", default=None, help="default: a fresh temporary folder")
    args = ap.parse_args()
    store = args.store or tempfile.mkdtemp(prefix="bench-tta-")
    out = {}
    for name in args.cases.split(","):
        out[name] = run_case(store, name, args.epochs)
        print(json.dumps({name: out[name]}), file=sys.stderr)
    print(write("time_to_accuracy", {"command": " ".join(sys.argv), "cases": out}))


if __name__ == "__main__":
    main()
