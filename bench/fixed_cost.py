"""Fixed cost of one training, end to end, as a user runs it: `imgclf train` (one epoch of
full MNIST) against a fresh Python process training the same net on the same prepared arrays
(imports and reading the arrays included; batch 128, AdamW), alternating, each run from
scratch.

Run: `python bench/fixed_cost.py [--model bp] [--repeats 2] [--modes in-process,ray]`.
Prints JSON: each side's wall seconds per run, their medians and the gap.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_results import command, write

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
BIN = Path(sys.executable).parent
# Only what the epoch needs: torch, numpy, the net's definition, the prepared arrays.
BARE = """
import json, os, sys
import numpy as np, torch
from lightning_modules.config import ModelConfig
from lightning_modules.nets import build_net
torch.set_num_threads(os.cpu_count() or 1)
m = json.load(open(os.path.join({uri!r}, "manifest.json")))
from lightning_modules.splits import load_split
xs, ys = load_split({uri!r}, "train")
x, y = torch.from_numpy(xs), torch.from_numpy(ys)
mean, std = torch.tensor(m["mean"]).view(1, -1, 1, 1), torch.tensor(m["std"]).view(1, -1, 1, 1)
net = build_net(ModelConfig(family={family!r}), tuple(m["shape"]), len(m["classes"])).train()
opt = torch.optim.AdamW(net.parameters(), lr=2e-3)
for idx in torch.randperm(len(y)).split(128):
    loss = torch.nn.functional.cross_entropy(net((x[idx].float() / 255 - mean) / std), y[idx])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
"""


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{' '.join(cmd[:3])} failed: {out.stderr[-2000:]}")
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="bp")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--modes", default="in-process,ray")
    args = ap.parse_args()
    store = tempfile.mkdtemp(prefix="bench-fixed-")
    prep = subprocess.run([str(BIN / "imgclf"), "prepare", "--store", store, "--source",
                           str(SHARED / "mnist")], capture_output=True, text=True, check=True)
    uri = json.loads(prep.stdout.strip().splitlines()[-1])["uri"]
    bare = [sys.executable, "-c", BARE.format(root=str(ROOT), family=args.model, uri=uri)]
    runs: dict[str, list[float]] = {"bare": []}
    for _ in range(args.repeats):
        for mode in args.modes.split(","):
            for d in ("models", "ray"):  # from scratch: no cached bundle, no run to resume
                shutil.rmtree(Path(store, d), ignore_errors=True)
            flag = "--in-process" if mode == "in-process" else "--no-in-process"
            runs.setdefault(mode, []).append(timed(
                [str(BIN / "imgclf"), "train", "--store", store, "--model", args.model,
                 "--epochs", "1", flag]))
        runs["bare"].append(timed(bare))
    med = {k: round(statistics.median(v), 2) for k, v in runs.items()}
    print(write("fixed_cost", {
        "command": command(), "model": args.model,
        "runs_s": {k: [round(x, 2) for x in v] for k, v in runs.items()}, "median_s": med,
        "gap_s": {k: round(v - med["bare"], 2) for k, v in med.items() if k != "bare"}}))
    shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    main()
