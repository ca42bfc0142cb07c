"""A split read batch by batch from its shards on local disk, for sets too large to
hold: a remote store's shards are fetched once into a content-addressed cache (verified while
they arrive; the training processes of a node share the files and the OS's page cache), a
local store's are read where they are (verified once per process). Each batch is gathered
with one positioned read per image into its own buffer, so the process holds a batch, not the
set, and nothing of the files counts as its memory."""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from lightning_modules.errors import DataError
from lightning_modules.splits import read_labels, shards
from lightning_modules.store import filesystem, is_local, join, sha256_of

log = logging.getLogger(__name__)
# A set whose training split is up to this size is held whole (fastest); a larger one has
# every split streamed.
IN_MEMORY_BYTES = 256 * 2**20
DEFAULT_CACHE = "~/.cache/imgclf/shards"
_verified: set[str] = set()  # local shard files hashed by this process


def split_bytes(manifest: dict, split: str) -> int:
    return sum(int(manifest["files"][s["x"]]["bytes"]) for s in shards(manifest, split))


def _fetch(url: str, sha256: str, cache: Path) -> str:
    """The shard at url as a local file named by its SHA-256, fetched once per machine."""
    target = cache / f"{sha256}.npy"
    if target.exists():
        return str(target)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=cache, suffix=".part", delete=False) as out:
        try:
            digest = sha256_of(url, copy_to=out)
        except BaseException:
            os.unlink(out.name)
            raise
    if digest != sha256:
        os.unlink(out.name)
        raise DataError(f"{url}: SHA-256 does not match the manifest (corrupt or tampered)")
    os.replace(out.name, target)  # ranks fetching the same shard: the last rename wins, alike
    return str(target)


def local_shards(uri: str, manifest: dict, split: str, cache: Path) -> list[str]:
    """Local paths of the split's image shards, each checked against the manifest."""
    out = []
    for s in shards(manifest, split):
        meta = manifest["files"][s["x"]]
        if not is_local(uri):
            out.append(_fetch(join(uri, s["x"]), meta["sha256"], cache))
            continue
        path = filesystem(join(uri, s["x"]))[1]
        if path not in _verified:
            if sha256_of(path) != meta["sha256"]:
                raise DataError(f"{join(uri, s['x'])}: SHA-256 does not match the manifest "
                                "(corrupt or tampered)")
            _verified.add(path)
        out.append(path)
    return out


def _data_offset(path: str) -> tuple[int, tuple[int, ...]]:
    """Where a .npy file's array starts, and its shape (uint8, C order, as prep writes it)."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) \
            else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        if fortran or dtype != np.uint8:
            raise DataError(f"{path}: not a C-ordered uint8 array")
        return f.tell(), shape


class StreamedBatches(Dataset):
    """The TensorBatches interface (`__getitems__` returns a stacked batch) over shard files."""

    def __init__(self, paths: list[str], y: torch.Tensor, keep: Optional[np.ndarray] = None
                 ) -> None:
        heads = [_data_offset(p) for p in paths]
        self.paths, self.offsets = paths, [o for o, _ in heads]
        self.item_shape = tuple(heads[0][1][1:])
        self.item = int(np.prod(self.item_shape))
        self.starts = np.cumsum([0] + [s[0] for _, s in heads])
        self.keep = keep  # positions in the whole split of a seeded subset, if any
        self.y = y
        self._fds: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self.y)

    def _files(self) -> list[int]:
        """Descriptors of this process (DataLoader workers and forks open their own)."""
        pid = os.getpid()
        if pid not in self._fds:
            self._fds = {pid: [os.open(p, os.O_RDONLY) for p in self.paths]}
        return self._fds[pid]

    def __getitems__(self, idx: list[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.as_tensor(idx, dtype=torch.int64)
        pos = t.numpy() if self.keep is None else self.keep[t.numpy()]
        out = np.empty((len(pos), *self.item_shape), dtype=np.uint8)
        flat = out.reshape(len(pos), -1)
        shard = np.searchsorted(self.starts, pos, side="right") - 1
        fds = self._files()
        for k, (s, p) in enumerate(zip(shard.tolist(), pos.tolist())):
            offset = self.offsets[s] + (p - int(self.starts[s])) * self.item
            if os.preadv(fds[s], [flat[k]], offset) != self.item:
                raise DataError(f"{self.paths[s]}: shorter than its header says")
        return torch.from_numpy(out), self.y[t]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.__getitems__([i])
        return x[0], y[0]

    def head(self, n: int) -> torch.Tensor:
        return self.__getitems__(torch.arange(min(n, len(self))))[0]


def streamed_split(uri: str, manifest: dict, split: str, cache: Path,
                   keep: Optional[np.ndarray] = None) -> StreamedBatches:
    y = read_labels(uri, manifest, split)
    if keep is not None:
        y = y[keep]
    return StreamedBatches(local_shards(uri, manifest, split, cache),
                           torch.from_numpy(y.astype(np.int64)), keep)
