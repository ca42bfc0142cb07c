"""A labelled image-folder tree (local or any fsspec URL), decoded in parallel into arrays."""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

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


@dataclass
class FolderSource:
    """A scanned tree read chunk by chunk (flows/prep/shards.py Source): labels from the scan,
    images decoded in parallel only when their chunk is written. A context manager: the
    decode processes live as long as it is open."""

    tree: Tree
    source: str
    size: int
    channels: int
    workers: int
    max_pixels: int
    strict: bool
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # map(fn, items) in order elsewhere (cluster/decode.py: a Ray cluster's nodes); default:
    # this machine's processes.
    mapper: Optional[Callable[[Callable, list], list]] = None
    _pool: Optional[object] = None

    @property
    def classes(self) -> list[str]:
        return self.tree.classes

    def parts(self) -> list[str]:
        return list(self.tree.splits)

    def labels(self, part: str) -> np.ndarray:
        return np.array([label for _, label in self.tree.splits[part]], dtype=np.int64)

    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)

    def __enter__(self) -> "FolderSource":
        if self.mapper is not None:
            return self
        if self.workers > 1:
            self._pool = mp.get_context("spawn").Pool(self.workers, init_worker,
                                                      (self.max_pixels,))
        else:
            init_worker(self.max_pixels)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.close()  # type: ignore[attr-defined]
            self._pool.join()  # type: ignore[attr-defined]
            self._pool = None

    def chunks(self, part: str, idx: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray,
                                                                   list[tuple[str, str]]]]:
        """(images, labels, unreadable files) per chunk of the part's images at idx."""
        items = self.tree.splits[part]
        chunk = max(64, min(CHUNK, (16 << 20) // (self.channels * self.size * self.size)))
        for start in range(0, len(idx), chunk):
            picked = [items[i] for i in idx[start:start + chunk]]
            out = self._decode([p for p, _ in picked])
            bad = [(path, res) for (path, _), res in zip(picked, out) if isinstance(res, str)]
            if self.strict and bad:
                raise DataError(f"{bad[0][0]}: {bad[0][1]} (--strict)")
            good = [(res, label) for (_, label), res in zip(picked, out)
                    if not isinstance(res, str)]
            x = np.stack([g for g, _ in good]) if good else \
                np.empty((0, *self.shape()), dtype=np.uint8)
            yield x, np.array([lb for _, lb in good], dtype=np.int64), bad

    def _decode(self, paths: list[str]) -> list:
        if self.mapper is not None:  # each node reads its images itself
            scheme = self.source.split("://", 1)[0] + "://" if not is_local(self.source) else ""
            return self.mapper(decode_task, [(scheme + p, self.size, self.channels)
                                             for p in paths])
        args = [(b, self.size, self.channels) for b in read_bytes(self.source, paths)]
        if self._pool is not None:
            return self._pool.map(decode_task, args, chunksize=16)  # type: ignore[attr-defined]
        return [decode(*a) for a in args]


def folder_source(tree: Tree, source: str, size: Optional[int], channels: Optional[int],
                  workers: int, max_pixels: int, strict: bool,
                  mapper: Optional[Callable[[Callable, list], list]] = None) -> FolderSource:
    """A scanned tree as a source; the image size and channels inferred when not given."""
    all_items = [it for items in tree.splits.values() for it in items]
    if size is None or channels is None:
        s, c = infer_shape(source, [p for p, _ in all_items])
        size, channels = size or s, channels or c
        log.info("%s: images will be %d×%d with %d channel(s)", source, size, size, channels)
    if strict and tree.skipped:
        path, why = tree.skipped[0]
        raise DataError(f"{path}: {why} (--strict; {len(tree.skipped)} such file(s))")
    return FolderSource(tree, source, size, channels, workers, max_pixels, strict,
                        skipped=list(tree.skipped), mapper=mapper)
