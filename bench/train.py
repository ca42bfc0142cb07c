"""Training benchmark: the pipeline's training (Lightning in a Ray task on a local Ray) against a
bare PyTorch loop.

Run: `python bench/train.py [--samples 12000] [--families bp,dnn,cnn,dcnn]`. Same net, data,
batch size and thread count on both sides, in one run. Prints JSON: steady-state img/s of each
and their ratio, the pipeline's start-up cost (Ray start + trainer set-up until the first
batch), and each side's training FLOP/s as a share of an sgemm peak measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench_results import command, matmul_peak, write
from cluster.config import TrainConfig
from cluster.train_worker import IMG_PER_S, STARTUP_S
from flows.config import PrepConfig
from flows.prep.build import prepare
from cluster.launcher import train_on_cluster
from flows.train import train_model
from lightning_modules.bundle import load_bundle
from lightning_modules.datamodule import PreparedData, standardize
from lightning_modules.evaluation import size_and_flops
from lightning_modules.nets import build_net

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def bare_loop(cfg: TrainConfig, uri: str, threads: int, warmup: int = 3) -> float:
    """Steady-state img/s of a plain PyTorch loop over the same data and net, with the same
    precision and memory layout as the pipeline resolves for this family here."""
    torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    precision, channels_last = cfg.compute.resolved(cfg.model.family, "cpu")
    layout = torch.channels_last if channels_last else torch.contiguous_format
    dm = PreparedData(uri, cfg.optim.batch_size, max_train_samples=cfg.max_train_samples)
    data = dm.split("train")
    net = build_net(cfg.model, dm.shape, len(dm.classes)).train().to(memory_format=layout)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.optim.lr,
                            weight_decay=cfg.optim.weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss()
    perm = torch.randperm(len(data))
    bs, images, t0 = cfg.optim.batch_size, 0, None
    for i, start in enumerate(range(0, len(perm), bs)):
        if i == warmup:
            t0 = time.perf_counter()
        idx = perm[start:start + bs]
        x, y = standardize(data.x[idx], dm.mean, dm.std), data.y[idx]
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16-mixed"):
            loss = loss_fn(net(x.contiguous(memory_format=layout)), y)
        loss.backward()
        opt.step()
        if t0 is not None:
            images += len(idx)
    return images / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--samples", type=int, default=12000)
    ap.add_argument("--families", default="bp,dnn,cnn,dcnn")
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()
    threads = os.cpu_count() or 1
    store = tempfile.mkdtemp(prefix="bench-train-")
    uri = prepare(PrepConfig(dataset="mnist", source=str(SHARED / "mnist"), store=store)).uri
    torch.set_num_threads(threads)
    peak = matmul_peak(torch.float32)
    out = {"threads": threads, "samples": args.samples, "sgemm_peak_gflops": round(peak / 1e9, 1),
           "torch": torch.__version__, "families": {}}
    for family in args.families.split(","):
        cfg = TrainConfig(dataset="mnist", store=store, epochs=1, max_train_samples=args.samples,
                          model={"family": family}, optim={"batch_size": args.batch_size,
                                                          "schedule": "none"})
        # Shared machines drift: bare runs before and after the pipeline run, median taken.
        bares = [bare_loop(cfg, uri, threads)]
        t = time.perf_counter()
        res = train_on_cluster(cfg, train_model)  # the pipeline's path: a Ray task on a local Ray
        wall = time.perf_counter() - t
        pipe = res.info["metrics"][IMG_PER_S]
        bares += [bare_loop(cfg, uri, threads), bare_loop(cfg, uri, threads)]
        bare = sorted(bares)[1]
        flops = 3 * size_and_flops(load_bundle(res.bundle_uri))["flops_per_image"]  # fwd + bwd
        out["families"][family] = {
            "precision_layout": cfg.compute.resolved(family, "cpu"),
            "pipeline_img_per_s": round(pipe, 1), "bare_img_per_s": round(bare, 1),
            "ratio": round(pipe / bare, 3), "bare_runs": [round(b, 1) for b in bares],
            "startup_s": round(res.info["metrics"][STARTUP_S], 2),
            "pipeline_wall_s": round(wall, 1),
            "pipeline_share_of_peak": round(pipe * flops / peak, 3),
            "bare_share_of_peak": round(bare * flops / peak, 3)}
        print(json.dumps({family: out["families"][family]}), file=sys.stderr)
    print(write("train", {"command": command(), **out}))


if __name__ == "__main__":
    main()
