"""A labelled image-folder tree (local or any fsspec URL), decoded in parallel into arrays."""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from flows.prep.decode import decode, decode_task, header, init_worker, is_grey
from lightning_modules.errors import DataError
from lightning_modules.store import filesystem, is_local

log = logging.getLogger(__name__)
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
CHUNK = 4096
MAX_INFERRED_SIDE = 256
Progress = Callable[[int], None]


@dataclass
class Tree:
    """What a scan found: image paths per split with labels, class names, and files skipped."""

    splits: dict[str, list[tuple[str, int]]]
    classes: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    infos: dict[str, dict] = field(default_factory=dict)


def _class_dirs(dirs: set[tuple[str, ...]], prefix: tuple[str, ...]) -> list[str]:
    n = len(prefix)
    return sorted({d[n] for d in dirs if len(d) > n and d[:n] == prefix})


def scan(source: str) -> Tree:
    """Walk the tree once: `train/<class>/*` + `test/<class>/*`, or `<class>/*` alone."""
    fs, root = filesystem(source)
    if not fs.isdir(root):
        raise DataError(f"{source}: not a folder")
    entries = fs.find(root, withdirs=True, detail=True)
    base = root.rstrip("/") + "/"
    dirs = {tuple(p[len(base):].split("/")) for p, i in entries.items()
            if i["type"] == "directory" and p.startswith(base)}
    files = {p: i for p, i in entries.items() if i["type"] != "directory"}
    top = _class_dirs(dirs, ())
    layout = [("train", ("train",)), ("test", ("test",))] if {"train", "test"} <= set(top) \
        else [("all", ())]
    classes = _class_dirs(dirs, layout[0][1])
    if not classes:
        raise DataError(f"{source}: no class folders found (want train/<class>/ or <class>/)")
    tree = Tree({name: [] for name, _ in layout}, classes, infos=files)
    index = {c: i for i, c in enumerate(classes)}
    for split, prefix in layout:
        extra = set(_class_dirs(dirs, prefix)) - set(classes)
        if extra:
            raise DataError(f"{source}/{'/'.join(prefix)}: class folders {sorted(extra)} "
                            "are not in the training tree")
    for path in sorted(files):
        parts = path[len(base):].split("/")
        split, prefix = next(((s, p) for s, p in layout if tuple(parts[:len(p)]) == p),
                             (None, None))
        ext = os.path.splitext(path)[1].lower()
        if split is None or len(parts) < len(prefix) + 2:
            tree.skipped.append((path, "stray file outside the class folders"))
        elif ext not in IMAGE_EXTS or parts[-1].startswith("."):
            tree.skipped.append((path, f"not an image file ({ext or 'no extension'})"))
        else:
            tree.splits[split].append((path, index[parts[len(prefix)]]))
    for split, items in tree.splits.items():
        counts = Counter(label for _, label in items)
        empty = [c for c in classes if counts[index[c]] == 0]
        if empty:
            raise DataError(f"{source}: class folder(s) {empty} in {split!r} hold no images")
    return tree


def read_bytes(source: str, paths: list[str]) -> list[str | bytes]:
    """Local files are read by the workers themselves; remote ones are fetched concurrently."""
    if is_local(source):
        return list(paths)
    fs, _ = filesystem(source)
    got = fs.cat(paths, on_error="return")
    return [b"" if isinstance(got[p], Exception) else got[p] for p in paths]


def infer_shape(source: str, paths: list[str], samples: int = 64) -> tuple[int, int]:
    """(side, channels): the most common image size (capped) and grey unless any is colour."""
    step = max(1, len(paths) // samples)
    heads = [h for h in map(header, read_bytes(source, paths[::step][:samples])) if h]
    if not heads:
        raise DataError(f"{source}: none of the sampled files is a readable image")
    (w, h), _ = Counter((w, h) for w, h, _ in heads).most_common(1)[0]
    side = min(max(w, h), MAX_INFERRED_SIDE)
    channels = 1 if all(is_grey(m) for _, _, m in heads) else 3
    return side, channels


def decode_all(source: str, items: list[tuple[str, int]], size: int, channels: int,
               workers: int, max_pixels: int, progress: Optional[Progress] = None
               ) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Decode every image into one preallocated array; unreadable ones are returned, not kept."""
    x = np.empty((len(items), channels, size, size), dtype=np.uint8)
    y = np.empty(len(items), dtype=np.int64)
    bad: list[tuple[str, str]] = []
    k = 0
    pool = mp.get_context("spawn").Pool(workers, init_worker, (max_pixels,)) if workers > 1 else None
    if pool is None:
        init_worker(max_pixels)
    try:
        for start in range(0, len(items), CHUNK):
            chunk = items[start:start + CHUNK]
            args = [(b, size, channels) for b in read_bytes(source, [p for p, _ in chunk])]
            out = pool.map(decode_task, args, chunksize=32) if pool else [decode(*a) for a in args]
            for (path, label), res in zip(chunk, out):
                if isinstance(res, str):
                    bad.append((path, res))
                else:
                    x[k], y[k] = res, label
                    k += 1
            if progress:
                progress(len(chunk))
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return x[:k], y[:k], bad


def load_imagefolder(tree: Tree, source: str, size: Optional[int], channels: Optional[int],
                     workers: int, max_pixels: int, strict: bool,
                     progress: Optional[Progress] = None) -> dict:
    """A scanned tree as arrays; the caller carves test data out when the tree has no test/."""
    all_items = [it for items in tree.splits.values() for it in items]
    if size is None or channels is None:
        s, c = infer_shape(source, [p for p, _ in all_items])
        size, channels = size or s, channels or c
        log.info("%s: images will be %d×%d with %d channel(s)", source, size, size, channels)
    if strict and tree.skipped:
        path, why = tree.skipped[0]
        raise DataError(f"{path}: {why} (--strict; {len(tree.skipped)} such file(s))")
    out: dict = {"classes": tree.classes, "skipped": list(tree.skipped)}
    for split, items in tree.splits.items():
        x, y, bad = decode_all(source, items, size, channels, workers, max_pixels, progress)
        if strict and bad:
            raise DataError(f"{bad[0][0]}: {bad[0][1]} (--strict)")
        out["skipped"].extend(bad)
        out[f"{split}_x"], out[f"{split}_y"] = x, y
    return out
