"""A prepared dataset's splits as the manifest lists them: shards of at most 64 MB (format 2,
flows/prep/shards.py) or one file per array (format 1, datasets prepared before shards)."""
from __future__ import annotations

import numpy as np

from lightning_modules.layout import MANIFEST
from lightning_modules.store import join, read_json, read_npy


def shards(manifest: dict, split: str) -> list[dict]:
    """[{"x": file, "y": file, "count": n}, ...] of one split, in order."""
    if "shards" in manifest:
        return list(manifest["shards"][split])
    return [{"x": f"{split}_x.npy", "y": f"{split}_y.npy",
             "count": manifest["splits"][split]["count"]}]


def read_labels(uri: str, manifest: dict, split: str) -> np.ndarray:
    files = manifest["files"]
    parts = [read_npy(join(uri, s["y"]), files[s["y"]]["sha256"]) for s in shards(manifest, split)]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def read_split(uri: str, manifest: dict, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The whole split in memory, each shard checked against its SHA-256 and copied into one
    array as it arrives (a shard at a time beside the result, never two copies of the split)."""
    files, parts = manifest["files"], shards(manifest, split)
    total = sum(int(s["count"]) for s in parts)
    x = np.empty((total, *manifest["shape"]), dtype=np.uint8)
    y = np.empty(total, dtype=np.int64)
    k = 0
    for s in parts:
        xs = read_npy(join(uri, s["x"]), files[s["x"]]["sha256"])
        ys = read_npy(join(uri, s["y"]), files[s["y"]]["sha256"])
        x[k:k + len(ys)], y[k:k + len(ys)] = xs, ys
        k += len(ys)
    return x[:k], y[:k]


def load_split(uri: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """read_split with the dataset's own manifest."""
    manifest = read_json(join(uri, MANIFEST))
    if manifest is None:
        raise FileNotFoundError(f"{uri}: no {MANIFEST}")
    return read_split(uri, manifest, split)
