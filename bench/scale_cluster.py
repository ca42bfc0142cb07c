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
import logging
import os
import socket
import subprocess
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from bench_results import command, write
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
                           limit=10_000, raise_on_missing_output=False)
        return dict(Counter(str(t.node_id)[:8] for t in tasks))
    finally:
        ray.shutdown()


@contextmanager
def s3_store() -> Iterator[str]:
    """moto's S3 server on loopback, this process's environment (inherited by the cluster's
    nodes and the commands) pointing the AWS SDK at it; yields a bucket's URL."""
    import s3fs
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                       "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_DEFAULT_REGION": "us-east-1"})
    s3fs.S3FileSystem().mkdir("scale")
    try:
        yield "s3://scale"
    finally:
        server.stop()


def train(store: str, address: str, workers: int, root: Path) -> dict:
    """One epoch of bp by `workers` DDP workers spread over the nodes (a seed per count, so
    none is a cached bundle); what it took and its bundle's figures."""
    log = root / f"train-{workers}.log"
    rc, seconds, rss = sampled_peak(imgclf(
        "train", "--dataset", "scale", "--model", "bp", "--epochs", "1", "--seed", str(workers),
        "--store", store, "--workers", str(workers), "--cpus-per-worker", "1", "--placement",
        "SPREAD", "--ray-address", address, "--shard-cache", str(root / "shards")), log=log)
    if rc:
        raise SystemExit(f"train failed:\n{log.read_text()[-3000:]}")
    import s3fs

    fs = s3fs.S3FileSystem()
    latest = json.loads(fs.cat_file(f"{store}/models/scale/bp/latest.json"))
    bundle = json.loads(fs.cat_file(f"{latest['uri']}/bundle.json"))
    return {"workers": workers, "seconds": seconds, "largest_process_rss": rss,
            "train_img_per_s": bundle["metrics"].get(M.IMG_PER_S),
            "val_acc": bundle["metrics"].get(M.VAL_ACC), "workers_seen": bundle.get("workers")}


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
        started, generated = time.perf_counter(), None  # None: a kept folder reused
        if not (folder / "train").exists():
            generate(folder, args.images - test, test, args.side)
            generated = time.perf_counter() - started
        prep_here, here = timed(imgclf("prepare", "--dataset", "imagefolder", "--name", "scale",
                                       "--source", str(folder), "--store", str(root / "here")))
        state = root / "cluster.json"
        with s3_store() as store:  # nodes share a store as on a real cluster: s3://
            info = local.up(args.nodes, cpus=1, dashboard_port=0, state=state)
            try:
                prep_there, there = timed(imgclf(
                    "prepare", "--dataset", "imagefolder", "--name", "scale", "--source",
                    str(folder), "--store", store, "--ray-address", info["address"]))
                nodes = decode_nodes(info["address"])
                trained = {n: train(store, info["address"], n, root) for n in (args.nodes, 1)}
            finally:
                local.down(state)
    decoded = args.images * 3 * args.side * args.side
    result = {"command": command(),
              "images": args.images, "side": args.side, "nodes": args.nodes,
              "cpus_per_node": 1, "decoded_bytes": decoded, "generate_seconds": generated,
              "prepare_here": {"seconds": prep_here, "img_per_s": args.images / prep_here},
              "prepare_on_cluster": {"seconds": prep_there, "img_per_s": args.images / prep_there,
                                     "decode_tasks_per_node": nodes,
                                     "same_dataset_key": here["uri"].rsplit("/", 1)[-1]
                                     == there["uri"].rsplit("/", 1)[-1]},
              "train": list(trained.values())}
    write("scale_cluster", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
