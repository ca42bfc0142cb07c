"""Is the Classifier's attribute fast path (lightning_modules/classifier.py: plain values stored
without nn.Module's checks) worth its lines? The same one-epoch bp training through the real
path (Lightning in this process, as `imgclf train`), with the fast path and without it,
alternating, in one process.

    python bench/classifier_setattr.py [--repeats 4] [--samples 8000] [--family bp]

Writes bench/results/classifier_setattr.json (training img/s of each run, the median ratio).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import lightning.pytorch as pl

from bench_results import write
from flows.config import DatasetSpec, PipelineConfig, PrepConfig
from flows.pipeline_plan import base_train
from flows.prep.build import prepare
from flows.train import train_model
from lightning_modules.classifier import Classifier

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
FAST = Classifier.__setattr__


def one_run(family: str, samples: int, fast: bool, seed: int) -> float:
    """Training img/s of one epoch in a fresh store (nothing cached)."""
    store = tempfile.mkdtemp(prefix="bench-setattr-")
    prepare(PrepConfig(store=store, dataset="mnist", source=str(SHARED / "mnist")))
    pipe = PipelineConfig(datasets=[DatasetSpec(dataset="mnist")], store=store)
    cfg = base_train(pipe, "mnist", family, seed, None).model_copy(
        update={"epochs": 1, "max_train_samples": samples})
    Classifier.__setattr__ = FAST if fast else pl.LightningModule.__setattr__
    try:
        res = train_model(cfg)
    finally:
        Classifier.__setattr__ = FAST
    return float(res.info["metrics"]["perf/train_img_per_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--samples", type=int, default=8000)
    ap.add_argument("--family", default="bp")
    args = ap.parse_args()
    one_run(args.family, args.samples, True, 99)  # warm-up: imports, first-call costs
    fast, plain = [], []
    for i in range(args.repeats):
        fast.append(one_run(args.family, args.samples, True, i))
        plain.append(one_run(args.family, args.samples, False, i))
    ratios = [f / p for f, p in zip(fast, plain)]
    print(write("classifier_setattr", {
        "command": " ".join(sys.argv), "family": args.family, "samples": args.samples,
        "fast_img_per_s": fast, "plain_img_per_s": plain,
        "median_ratio_fast_over_plain": round(statistics.median(ratios), 3)}))


if __name__ == "__main__":
    main()
