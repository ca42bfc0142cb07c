"""A prepared dataset's splits written as shards in bounded memory: the split of every image is
decided from the labels alone, then the images are read (decoded, for a folder) chunk by chunk
and written as .npy shards of at most SHARD_BYTES, each hashed while it is written. Memory
holds one chunk, one shard and a few sample images per class, whatever the folder's size."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Protocol

import numpy as np

from lightning_modules.store import join, write_npy

# Shards suit local disks and object stores alike (S3 multipart parts, parallel reads).
SHARD_BYTES = 64 * 2**20
SAMPLES_PER_CLASS = 32  # kept for the card's grid (it shows 8 of them)
Part = tuple[str, np.ndarray]  # (a source part: train, test or all; indices into it)
Chunk = tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]  # (x, y, unreadable files)


class Source(Protocol):
    """What the writer reads: labels per part without decoding, then images in chunks."""

    classes: list[str]
    skipped: list[tuple[str, str]]

    def parts(self) -> list[str]: ...

    def labels(self, part: str) -> np.ndarray: ...

    def shape(self) -> tuple[int, int, int]: ...

    def chunks(self, part: str, idx: np.ndarray) -> Iterator[Chunk]: ...

    def __enter__(self) -> "Source": ...

    def __exit__(self, *exc: object) -> None: ...


@dataclass
class ArraySource:
    """A source already in memory (IDX, the CIFAR archive)."""

    arrays: dict[str, np.ndarray]
    classes: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    chunk: int = 8192

    def parts(self) -> list[str]:
        return [p for p in ("train", "test", "all") if f"{p}_y" in self.arrays]

    def labels(self, part: str) -> np.ndarray:
        return self.arrays[f"{part}_y"]

    def shape(self) -> tuple[int, int, int]:
        return tuple(self.arrays[f"{self.parts()[0]}_x"].shape[1:])  # type: ignore[return-value]

    def __enter__(self) -> "ArraySource":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def chunks(self, part: str, idx: np.ndarray) -> Iterator[Chunk]:
        x, y = self.arrays[f"{part}_x"], self.arrays[f"{part}_y"]
        for i in range(0, len(idx), self.chunk):
            j = idx[i:i + self.chunk]
            yield x[j], y[j], []


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held-out) indices, the same share of every class held out (at least one image of
    each class that has two), in original order."""
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        rng.shuffle(members)
        n = int(round(len(members) * fraction))
        held.append(members[:max(n, 1 if fraction > 0 and len(members) > 1 else 0)])
    held_idx = np.sort(np.concatenate(held)) if held else np.array([], dtype=np.int64)
    return np.setdiff1d(np.arange(len(y)), held_idx), held_idx


def plan_splits(src: Source, val_fraction: float, test_fraction: float, seed: int
                ) -> dict[str, Part]:
    """Which images go to train, val and test, from the labels alone: a tree without test/
    gives up test_fraction of each class (seed + 1), then the training part val_fraction
    (seed)."""
    if "all" in src.parts():
        y = src.labels("all")
        train_idx, test_idx = stratified_split(y, test_fraction, seed + 1)
        part, test = "all", ("all", test_idx)
    else:
        part, test = "train", ("test", np.arange(len(src.labels("test"))))
        train_idx = np.arange(len(src.labels("train")))
    keep, held = stratified_split(src.labels(part)[train_idx], val_fraction, seed)
    return {"train": (part, train_idx[keep]), "val": (part, train_idx[held]), "test": test}


class SplitWriter:
    """One split's shards under a temporary prefix, with its counts, and for train the
    channel statistics and the card's samples."""

    def __init__(self, tmp: str, split: str, shape: tuple[int, int, int], n_classes: int,
                 shard_bytes: int) -> None:
        self.tmp, self.split, self.n_classes, self.shape = tmp, split, n_classes, shape
        self.per = max(1, shard_bytes // int(np.prod(shape)))
        self.x = np.empty((self.per, *shape), dtype=np.uint8)
        self.y = np.empty(self.per, dtype=np.int64)
        self.k = 0
        self.files: dict[str, dict] = {}
        self.shards: list[dict] = []
        self.per_class = np.zeros(n_classes, dtype=np.int64)
        self.sums = np.zeros((2, shape[0]), dtype=np.float64)  # Σ v, Σ v² (v in [0, 255])
        self.samples: list[list[np.ndarray]] = [[] for _ in range(n_classes)]

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        i = 0
        while i < len(y):
            take = min(self.per - self.k, len(y) - i)
            self.x[self.k:self.k + take], self.y[self.k:self.k + take] = x[i:i + take], y[i:i + take]
            self.k, i = self.k + take, i + take
            if self.k == self.per:
                self._flush()

    def _flush(self) -> None:
        if not self.k:
            return
        x, y = self.x[:self.k], self.y[:self.k]
        n = len(self.shards)
        names = {"x": f"{self.split}_x-{n:05d}.npy", "y": f"{self.split}_y-{n:05d}.npy"}
        self.files[names["x"]] = write_npy(join(self.tmp, names["x"]), x)
        self.files[names["y"]] = write_npy(join(self.tmp, names["y"]), y)
        self.shards.append({**names, "count": int(self.k)})
        self.per_class += np.bincount(y, minlength=self.n_classes)
        if self.split == "train":
            self._observe(x, y)
        self.k = 0

    def _observe(self, x: np.ndarray, y: np.ndarray) -> None:
        """Channel sums in small slices (no float copy of the shard), and the first samples."""
        step = max(1, (8 << 20) // max(1, x[0].size))
        for i in range(0, len(x), step):
            part = x[i:i + step]
            self.sums[0] += part.sum(axis=(0, 2, 3), dtype=np.float64)
            self.sums[1] += np.einsum("nchw,nchw->c", part, part, dtype=np.float64)
        for img, label in zip(x, y):
            if len(self.samples[label]) < SAMPLES_PER_CLASS:
                self.samples[label].append(img.copy())

    def close(self) -> None:
        """Flush the last shard and let the buffer go."""
        self._flush()
        self.x, self.y = np.empty((0, *self.shape), np.uint8), np.empty(0, np.int64)  # freed

    def info(self) -> dict:
        """The split's manifest entry."""
        return {"count": int(self.per_class.sum()), "per_class": self.per_class.tolist()}

    def stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of pixel values scaled to [0, 1]."""
        n = max(int(self.per_class.sum()) * self.shape[1] * self.shape[2], 1)
        mean = self.sums[0] / n / 255.0
        std = np.sqrt(np.maximum(self.sums[1] / n / 255.0 ** 2 - mean ** 2, 1e-12))
        return mean.tolist(), std.tolist()

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        xs = [img for imgs in self.samples for img in imgs]
        ys = [c for c, imgs in enumerate(self.samples) for _ in imgs]
        return np.stack(xs), np.array(ys, dtype=np.int64)


def write_splits(src: Source, plan: dict[str, Part], tmp: str,
                 progress: Optional[Callable[[int], None]] = None) -> dict[str, SplitWriter]:
    """Every split's shards under tmp (unreadable images land in src.skipped)."""
    shape = src.shape()
    writers = {}
    for split, (part, idx) in plan.items():
        w = SplitWriter(tmp, split, shape, len(src.classes), SHARD_BYTES)
        for x, y, bad in src.chunks(part, idx):
            w.add(x, y)
            src.skipped.extend(bad)
            if progress:
                progress(len(y) + len(bad))
        w.close()
        writers[split] = w
    return writers
