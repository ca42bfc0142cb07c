"""Memory of an image folder larger than a tiny one: the peak resident memory of the largest
process of `imgclf prepare`, of an in-process `imgclf train --model bp --epochs 1` and of a
two-worker DDP one (`--workers 2`, sampled), on a tiny folder and on a generated one (RGB
PNGs, ten classes, train/ and test/), and training throughput with the images held and
streamed from their shards, side by side.

    python bench/large_folder.py [--images 30000] [--test 3000] [--side 96] [--repeats 2]

Writes bench/results/large_folder.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np
import psutil
from PIL import Image

from bench_results import command, write
from lightning_modules import metrics as M

CLASSES = 10
PEAK = """
import resource, subprocess, sys
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def generate(root: Path, train: int, test: int, side: int, seed: int = 0) -> int:
    """A learnable folder: each class a colour ramp at its own angle, with noise. Returns
    its decoded size in bytes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] / side
    for split, n in (("train", train), ("test", test)):
        for i in range(n):
            c = i % CLASSES
            angle = np.pi * c / CLASSES
            ramp = np.cos(angle) * xx + np.sin(angle) * yy
            img = np.stack([ramp, 1 - ramp, np.full_like(ramp, c / CLASSES)], -1) * 200
            img = (img + rng.normal(0, 25, img.shape)).clip(0, 255).astype(np.uint8)
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(folder / f"{i:06d}.png")
    return (train + test) * 3 * side * side


def peak(cmd: list[str]) -> tuple[int, float, int]:
    """(exit status, seconds, peak RSS in bytes of the largest process of cmd's tree)."""
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", PEAK, *cmd], capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[0]), time.perf_counter() - started, int(out[1]) * 1024


def sampled_peak(cmd: list[str], every: float = 0.1, log: Optional[Path] = None
                 ) -> tuple[int, float, int]:
    """(exit status, seconds, the largest resident memory of any one process of cmd's tree,
    sampled every `every` s): Ray's workers are the raylet's children, which rusage misses.
    The command's output goes to log, if given."""
    started = time.perf_counter()
    out = open(log, "w") if log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT if log else out)
    root, top = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            break
        for p in tree:
            try:
                top = max(top, p.memory_info().rss)
            except psutil.Error:
                pass
        time.sleep(every)
    return proc.wait(), time.perf_counter() - started, top


def imgclf(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "imgclf"), *args]


def measure(folder: Path, store: Path, name: str) -> dict:
    prep = peak(imgclf("prepare", "--dataset", "imagefolder", "--name", name, "--source",
                       str(folder), "--store", str(store)))
    train = peak(imgclf("train", "--dataset", name, "--model", "bp", "--epochs", "1",
                        "--store", str(store), "--in-process"))
    # Two DDP workers of one node (Ray Train), each streaming its half of the split.
    ddp = sampled_peak(imgclf("train", "--dataset", name, "--model", "bp", "--epochs", "1",
                              "--store", str(store), "--workers", "2", "--cpus-per-worker", "1"))
    assert prep[0] == 0 and train[0] == 0 and ddp[0] == 0, f"{name}: prepare or train failed"
    return {"prepare": {"rc": prep[0], "seconds": prep[1], "peak_rss": prep[2]},
            "train": {"rc": train[0], "seconds": train[1], "peak_rss": train[2]},
            "train_ddp2": {"rc": ddp[0], "seconds": ddp[1], "peak_rss": ddp[2]}}


def throughput(store: Path, name: str, stream: bool, seed: int) -> float:
    """Training img/s of one bp epoch (the bundle's own figure: steps only)."""
    out = subprocess.run(imgclf("train", "--dataset", name, "--model", "bp", "--epochs", "1",
                                "--seed", str(seed), "--store", str(store), "--in-process",
                                "--stream-data" if stream else "--no-stream-data"),
                         capture_output=True, text=True, check=True).stdout
    res = json.loads(out.strip().splitlines()[-1])
    assert not res["cached"], "a fresh seed per run: a cached bundle measures nothing"
    bundle = res["bundle"]
    info = json.loads(Path(bundle, "bundle.json").read_text())
    return float(info["metrics"][M.IMG_PER_S])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=30_000)
    ap.add_argument("--test", type=int, default=3_000)
    ap.add_argument("--side", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-large-") as tmp:
        root = Path(tmp)
        tiny_bytes = generate(root / "tiny", 600, 60, args.side)  # a few batches
        big_bytes = generate(root / "big", args.images, args.test, args.side, seed=1)
        tiny = measure(root / "tiny", root / "store", "tiny")
        big = measure(root / "big", root / "store", "big")
        rates: dict[str, list[float]] = {"held": [], "streamed": []}
        for r in range(args.repeats):  # alternating, in one run
            for stream in (False, True):
                rates["streamed" if stream else "held"].append(
                    throughput(root / "store", "big", stream, seed=10 + 2 * r + stream))
    growth = {k: (big[k]["peak_rss"] - tiny[k]["peak_rss"]) / big_bytes for k in big}
    result = {"command": command(),
              "images": args.images, "test": args.test, "side": args.side,
              "decoded_bytes": big_bytes, "tiny_decoded_bytes": tiny_bytes,
              "tiny": tiny, "big": big, "growth_over_decoded": growth,
              "train_img_per_s": rates,
              "streamed_over_held": float(np.median(rates["streamed"]) / np.median(rates["held"]))}
    write("large_folder", result)
    print(json.dumps({"growth_over_decoded": growth,
                      "streamed_over_held": result["streamed_over_held"]}, indent=2))


if __name__ == "__main__":
    main()
