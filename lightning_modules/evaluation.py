"""Test-set metrics (torchmetrics), model size and FLOPs, throughput and latency of a Predictor."""
from __future__ import annotations

import time
from typing import Optional

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassCalibrationError,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from lightning_modules import metrics as M
from lightning_modules.bundle import Predictor
from lightning_modules.datamodule import TensorBatches, eval_batch
from lightning_modules.streamed import StreamedBatches


def test_metrics(pred: Predictor, part: TensorBatches | StreamedBatches,
                 batch: Optional[int] = None) -> dict:
    """Accuracy, macro-F1, per-class P/R/F1, confusion matrix, ECE and the predicted classes,
    over a split read batch by batch (held or streamed from its shards)."""
    n = len(pred.classes)
    batch = batch or eval_batch(pred.shape)
    ms = {"acc": MulticlassAccuracy(n, average="micro"), "f1": MulticlassF1Score(n, average="macro"),
          "p": MulticlassPrecision(n, average=None), "r": MulticlassRecall(n, average=None),
          "f1c": MulticlassF1Score(n, average=None), "cm": MulticlassConfusionMatrix(n),
          "ece": MulticlassCalibrationError(n, n_bins=15, norm="l1")}
    preds = []
    for i in range(0, len(part), batch):
        x, y = part.__getitems__(torch.arange(i, min(i + batch, len(part))))
        probs = pred.probs(x)
        preds.append(probs.argmax(dim=1))
        for m in ms.values():
            m.update(probs, y)
    out = {k: m.compute() for k, m in ms.items()}
    return {
        M.TEST_ACC: float(out["acc"]), M.TEST_F1: float(out["f1"]), M.TEST_ECE: float(out["ece"]),
        "per_class": {name: {"precision": float(out["p"][i]), "recall": float(out["r"][i]),
                             "f1": float(out["f1c"][i])} for i, name in enumerate(pred.classes)},
        "confusion": out["cm"].tolist(), "test_count": int(len(part)),
        "predictions": torch.cat(preds).numpy(),  # per test image, for paired tests
    }


def size_and_flops(pred: Predictor) -> dict:
    """Parameter count and forward FLOPs for one image (torch's FLOP counter)."""
    params = sum(p.numel() for p in pred.net.parameters())
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        pred.net(torch.zeros(1, *pred.shape))
    return {"params": int(params), "flops_per_image": int(counter.get_total_flops())}


def speed(pred: Predictor, batch: int = 256, repeats: int = 5, single: int = 200) -> dict:
    """Inference img/s at `batch` and single-image latency p50/p99 (ms), preprocessing included."""
    xb = torch.randint(0, 256, (batch, *pred.shape), dtype=torch.uint8)
    pred.probs(xb)  # warm-up
    t = time.perf_counter()
    for _ in range(repeats):
        pred.probs(xb)
    img_s = batch * repeats / (time.perf_counter() - t)
    x1 = xb[:1]
    for _ in range(10):
        pred.probs(x1)
    lat = []
    for _ in range(single):
        t = time.perf_counter()
        pred.probs(x1)
        lat.append((time.perf_counter() - t) * 1000)
    return {"img_per_s": round(img_s, 1), "latency_ms_p50": round(float(np.percentile(lat, 50)), 3),
            "latency_ms_p99": round(float(np.percentile(lat, 99)), 3), "batch": batch,
            "threads": torch.get_num_threads()}
