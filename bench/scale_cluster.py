"""A large generated image folder on a simulated multi-node cluster: prepared by decode tasks
on every node (`imgclf prepare --ray-address`) and trained for one epoch by DDP workers spread
over the nodes (`imgclf train --workers N --placement SPREAD`), beside the same prep on this
machine alone; what each step took and where the decoding ran.

    python bench/scale_cluster.py [--images 200000] [--side 32] [--nodes 3] [--folder DIR]

Writes bench/results/scale_cluster.json. --folder keeps the generated folder for a rerun.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench_results import write
from large_folder import generate, imgclf, sampled_peak
from lightning_modules import metrics as M


def timed(cmd: list[str]) -> tuple[float, dict]:
    """Seconds and the command's last line of output (its JSON result)."""
    started = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd[:3])} failed:\n{out.stderr[-2000:]}")
    return time.perf_counter() - started, json.loads(out.stdout.strip().splitlines()[-1])


def decode_nodes(address: str) -> dict[str, int]:
    """Decode tasks per node (the state API's record of this cluster's tasks)."""
    import ray
    from ray.util.state import list_tasks

    ray.init(address=address, logging_level="ERROR")
    try:
        tasks = list_tasks(filters=[("func_or_class_name", "=", "_decode_piece")],
                           limit=100_000, raise_on_missing_output=False)
        return dict(Counter(str(t.node_id)[:8] for t in tasks))
    finally:
        ray.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200_000, help="in all, a tenth for test")
    ap.add_argument("--side", type=int, default=32)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--folder", help="keep (or reuse) the generated folder here")
    args = ap.parse_args()
    from cluster import local

    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        root = Path(tmp)
        folder = Path(args.folder) if args.folder else root / "folder"
        test = args.images // 10
        started = time.perf_counter()
        if not (folder / "train").exists():
            generate(folder, args.images - test, test, args.side)
        generated = time.perf_counter() - started
        prep_here, here = timed(imgclf("prepare", "--dataset", "imagefolder", "--name", "scale",
                                       "--source", str(folder), "--store", str(root / "here")))
        state = root / "cluster.json"
        info = local.up(args.nodes, cpus=1, dashboard_port=0, state=state)
        try:
            prep_there, there = timed(imgclf(
                "prepare", "--dataset", "imagefolder", "--name", "scale", "--source",
                str(folder), "--store", str(root / "there"), "--ray-address", info["address"]))
            nodes = decode_nodes(info["address"])
            train = sampled_peak(imgclf(
                "train", "--dataset", "scale", "--model", "bp", "--epochs", "1", "--store",
                str(root / "there"), "--workers", str(args.nodes), "--cpus-per-worker", "1",
                "--placement", "SPREAD", "--ray-address", info["address"]))
        finally:
            local.down(state)
        bundles = list((root / "there" / "models" / "scale" / "bp").glob("*/bundle.json"))
        bundle = json.loads(bundles[0].read_text())
    decoded = args.images * 3 * args.side * args.side
    result = {"command": "python bench/scale_cluster.py " + " ".join(sys.argv[1:]),
              "images": args.images, "side": args.side, "nodes": args.nodes,
              "cpus_per_node": 1, "decoded_bytes": decoded, "generate_seconds": generated,
              "prepare_here": {"seconds": prep_here, "img_per_s": args.images / prep_here},
              "prepare_on_cluster": {"seconds": prep_there, "img_per_s": args.images / prep_there,
                                     "decode_tasks_per_node": nodes,
                                     "same_dataset_key": here["uri"].rsplit("/", 1)[-1]
                                     == there["uri"].rsplit("/", 1)[-1]},
              "train_ddp": {"workers": args.nodes, "rc": train[0], "seconds": train[1],
                            "largest_process_rss": train[2],
                            "train_img_per_s": bundle["metrics"].get(M.IMG_PER_S),
                            "val_acc": bundle["metrics"].get(M.VAL_ACC),
                            "workers_seen": bundle.get("workers")}}
    write("scale_cluster", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
