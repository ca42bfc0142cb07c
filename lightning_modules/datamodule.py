"""A prepared dataset (local or s3://) held as tensors, batched by index, normalised on device."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lightning_modules import layout
from lightning_modules.errors import DataError
from lightning_modules.splits import read_split
from lightning_modules.store import join, read_json
from lightning_modules.streamed import (
    DEFAULT_CACHE,
    IN_MEMORY_BYTES,
    StreamedBatches,
    split_bytes,
    streamed_split,
)

log = logging.getLogger(__name__)
# Evaluation batches (as float32) are kept within this size, however large the images.
EVAL_BATCH_BYTES = 32 * 2**20


class MissingDatasetError(FileNotFoundError):
    """The URI holds no complete prepared dataset (no manifest)."""


def load_manifest(uri: str) -> dict:
    manifest = read_json(join(uri, layout.MANIFEST))
    if manifest is None:
        raise MissingDatasetError(f"{uri}: no prepared dataset there (no manifest.json)")
    return manifest


class TensorBatches(Dataset):
    """Whole tensors; `__getitems__` lets the DataLoader fetch a batch with one indexing op."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]

    def __getitems__(self, idx: list[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.as_tensor(idx, device=self.y.device)
        return self.x[t], self.y[t]

    def head(self, n: int) -> torch.Tensor:
        return self.x[:n]


class ShuffledBatches:
    """Batches of a fresh permutation as index tensors: what shuffle=True gives, without
    building a list of Python ints per batch (a single process only: Lightning swaps in a
    DistributedSampler for DDP, which needs a standard sampler)."""

    def __init__(self, n: int, batch_size: int) -> None:
        self.n, self.batch_size = n, batch_size

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Any:
        return iter(torch.randperm(self.n).split(self.batch_size))


def keep_batch(batch: Any) -> Any:
    """collate_fn: the batch is already stacked by `__getitems__`."""
    return batch


def random_crop_flip(x: torch.Tensor, pad: int, generator: torch.Generator | None = None
                     ) -> torch.Tensor:
    """Per-image random translation (reflect-padded crop) and horizontal flip, vectorised."""
    n, c, h, w = x.shape
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device="cpu").to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device="cpu").to(x.device)
    rows = (torch.arange(h, device=x.device)[None] + dy[:, None])[:, None, :, None]
    cols = (torch.arange(w, device=x.device)[None] + dx[:, None])[:, None, None, :]
    out = xp[torch.arange(n, device=x.device)[:, None, None, None],
             torch.arange(c, device=x.device)[None, :, None, None], rows, cols]
    flip = (torch.rand(n, generator=generator, device="cpu") < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def standardize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] → (x - mean) / std per channel; uint8 input is scaled first."""
    if x.dtype == torch.uint8:
        x = x.float().div_(255.0)
    return (x - mean.to(x.device).view(1, -1, 1, 1)) / std.to(x.device).view(1, -1, 1, 1)


def augments(shape: tuple[int, int, int] | list[int]) -> bool:
    """Shift + flip suits photos (RGB), not digits or garments drawn in a fixed frame; a model
    trained with them is also evaluated with them (test-time augmentation)."""
    return shape[0] == 3


def eval_batch(shape: tuple[int, ...] | list[int], cap: int = 1024) -> int:
    """Images per evaluation batch: up to cap, fewer for large images, so a batch as the net
    sees it (float32) stays within EVAL_BATCH_BYTES whatever the images' size."""
    return max(1, min(cap, EVAL_BATCH_BYTES // (4 * int(np.prod(shape)))))


class PreparedData(pl.LightningDataModule):
    """Reads the arrays once (checking each file's SHA-256 against the manifest)."""

    def __init__(self, uri: str, batch_size: int, augment: Optional[bool] = None,
                 max_train_samples: Optional[int] = None, eval_batch_size: int = 1024,
                 seed: int = 0, resident: bool = False,
                 max_eval_samples: Optional[int] = None, stream: Optional[bool] = None,
                 cache_dir: str = DEFAULT_CACHE) -> None:
        super().__init__()
        self.uri, self.batch_size = uri, batch_size
        self.resident = resident
        self.max_train_samples, self.seed = max_train_samples, seed
        self.max_eval_samples = max_eval_samples
        self.stream, self.cache_dir = stream, cache_dir
        self.manifest = load_manifest(uri)
        self.eval_batch_size = eval_batch(self.shape, eval_batch_size)
        self.augment = augments(self.shape) if augment is None else augment
        self.mean = torch.tensor(self.manifest["mean"]).view(1, -1, 1, 1)
        self.std = torch.tensor(self.manifest["std"]).view(1, -1, 1, 1)
        self.splits: dict[str, TensorBatches] = {}

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.manifest["shape"])

    @property
    def classes(self) -> list[str]:
        return self.manifest["classes"]

    def streams(self) -> bool:
        """Whether the splits are read batch by batch from their shards (large sets) rather
        than held whole (faster while they fit): stream, or by the training split's size (a
        large set's validation tenth is no small thing to hold either)."""
        if self.stream is not None:
            return self.stream
        return split_bytes(self.manifest, "train") > IN_MEMORY_BYTES

    def _subset(self, name: str, n: int) -> Optional[np.ndarray]:
        """Positions kept of a split of n: the run's seeded subset of the training images, or
        the one fixed sample (seed 0) of validation and test images for every run."""
        cap = self.max_train_samples if name == "train" else self.max_eval_samples
        if not cap or cap >= n:
            return None
        rng = np.random.default_rng(self.seed if name == "train" else 0)
        return np.sort(rng.permutation(n)[:cap])

    def split(self, name: str) -> TensorBatches | StreamedBatches:
        if name not in self.splits and self.streams():
            keep = self._subset(name, int(self.manifest["splits"][name]["count"]))
            self.splits[name] = streamed_split(self.uri, self.manifest, name,
                                               Path(self.cache_dir).expanduser(), keep)
            log.info("%s: %s images streamed from %d shard(s) of %.0f MB in all", self.uri,
                     name, len(self.manifest.get("shards", {}).get(name, [])) or 1,
                     split_bytes(self.manifest, name) / 2**20)
        if name not in self.splits:
            x, y = read_split(self.uri, self.manifest, name)
            keep = self._subset(name, len(y))
            if keep is not None:
                x, y = x[keep], y[keep]
            self.splits[name] = TensorBatches(torch.from_numpy(np.ascontiguousarray(x)),
                                              torch.from_numpy(y.astype(np.int64)))
        return self.splits[name]

    def setup(self, stage: Optional[str] = None) -> None:
        n = len(self.split("train"))
        if self.batch_size > n:
            raise ValueError(f"batch size {self.batch_size} is larger than the training set ({n})")
        if self.resident and self.trainer is not None:
            self.to_device(self.trainer.strategy.root_device)

    def to_device(self, device: torch.device) -> None:
        """The splits moved to the device once (uint8: a 54k-image MNIST is 42 MB), so a step
        indexes its batch there instead of copying it from the host."""
        for name in ("train", "val", "test"):
            if name == "val" and not self.manifest["splits"]["val"]["count"] \
                    or self.streams():
                continue
            part = self.split(name)
            self.splits[name] = TensorBatches(part.x.to(device), part.y.to(device))

    def _loader(self, name: str, train: bool) -> DataLoader:
        if train and (self.trainer is None or self.trainer.world_size == 1):
            part = self.split(name)
            return DataLoader(part, batch_sampler=ShuffledBatches(len(part), self.batch_size),
                              collate_fn=keep_batch)
        return DataLoader(self.split(name), batch_size=self.batch_size if train
                          else self.eval_batch_size, shuffle=train, collate_fn=keep_batch)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        if not self.manifest["splits"]["val"]["count"]:  # never select on the test split
            raise DataError(f"{self.uri}: this prepared dataset has no validation split; "
                            "prepare it again with --val-fraction above 0")
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def whitening_sample(self, n: int = 5000) -> torch.Tensor:
        """The first n training images, standardised as the net sees them: the statistics a
        whitening stem is fitted to."""
        return standardize(self.split("train").head(n), self.mean, self.std)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        x, y = batch
        x = x.float().div_(255.0)
        if self.augment and self.trainer is not None and self.trainer.training:
            x = random_crop_flip(x, pad=max(1, x.shape[-1] // 16))
        return standardize(x, self.mean, self.std), y
