"""The dataset sources, one registry: each kind of source says how to fingerprint it, how to
read it, where its canonical files are, and which offline copy stands in for them. A new source
is its reader (a module beside this one) and one KINDS entry here; the configs' choices, the
CLI, the Prefect form and the profiles derive from KINDS."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol

from flows.prep import cifar, idx, imagefolder
from flows.prep.shards import ArraySource, Source
from flows.prep.sources import RemoteFile, content_fingerprint, idx_files, stat_fingerprint
from lightning_modules.store import filesystem, join


class PrepOptions(Protocol):
    """What a reader takes of the prep config (flows.config.PrepConfig, which imports KINDS)."""

    image_size: Optional[int]
    channels: Optional[int]
    workers: Optional[int]
    max_pixels: int
    ray_address: Optional[str]
    strict: bool

    def resolved_name(self) -> str: ...

Scan = tuple[str, Optional[imagefolder.Tree]]  # (fingerprint, the scanned tree if any)


@dataclass(frozen=True)
class Kind:
    """One kind of source."""

    about: str
    scan: Callable[[str], Scan]
    load: Callable[[PrepOptions, str, Optional[imagefolder.Tree]], Source]
    canonical: list[RemoteFile] = field(default_factory=list)
    # The offline copy under $IMGCLF_OFFLINE_DATA (or ../shared/datasets) and the kind it is
    # read as (CIFAR-10's copy is a JPEG image-folder tree).
    offline: Optional[tuple[str, str]] = None


def _idx_scan(source: str) -> Scan:
    return content_fingerprint([join(source, f) for f in idx.IDX_FILES.values()]), None


def _arrays(raw: dict[str, Any]) -> ArraySource:
    return ArraySource({k: v for k, v in raw.items() if k.endswith(("_x", "_y"))},
                       list(raw["classes"]), list(raw["skipped"]))


def _idx_load(classes: list[str]) -> Callable[..., Source]:
    return lambda cfg, source, tree: _arrays(idx.load_idx_dataset(source, classes))


def _cifar_scan(source: str) -> Scan:
    fs, path = filesystem(source)
    files = [join(source, cifar.FOLDER, m) if fs.isdir(join(path, cifar.FOLDER))
             else join(source, m) for m in cifar.ALL_MEMBERS] if fs.isdir(path) else [source]
    return content_fingerprint(files), None


def _folder_scan(source: str) -> Scan:
    tree = imagefolder.scan(source)
    return stat_fingerprint(source, tree.infos), tree


def _folder_load(cfg: PrepOptions, source: str, tree: Optional[imagefolder.Tree]) -> Source:
    assert tree is not None
    mapper = None
    if cfg.ray_address:
        from cluster.decode import cluster_mapper
        from flows.prep.decode import init_worker

        mapper = cluster_mapper(cfg.ray_address, init_worker, (cfg.max_pixels,))
    return imagefolder.folder_source(tree, source, cfg.image_size, cfg.channels,
                                     cfg.workers or os.cpu_count() or 1, cfg.max_pixels,
                                     cfg.strict, mapper)


_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                  "https://storage.googleapis.com/cvdf-datasets/mnist/",
                  "http://yann.lecun.com/exdb/mnist/")
_FASHION_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/")
# SHA-256 of each gunzipped payload, so re-gzipped mirrors verify too.
_MNIST_SUMS = {
    "train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"}
_FASHION_SUMS = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"}
_FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                    "Sneaker", "Bag", "Ankle boot"]

KINDS: dict[str, Kind] = {
    "mnist": Kind("MNIST digits (IDX)", _idx_scan, _idx_load([str(i) for i in range(10)]),
                  idx_files(_MNIST_MIRRORS, _MNIST_SUMS), offline=("mnist", "mnist")),
    "fashion-mnist": Kind("Fashion-MNIST (IDX)", _idx_scan, _idx_load(_FASHION_CLASSES),
                          idx_files(_FASHION_MIRRORS, _FASHION_SUMS),
                          offline=("fashion-mnist", "fashion-mnist")),
    "cifar10": Kind("CIFAR-10 (the python archive)", _cifar_scan,
                    lambda cfg, source, tree: _arrays(cifar.load_cifar_dataset(source)),
                    [RemoteFile("cifar-10-python.tar.gz",
                                ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                                md5="c58f30108f718f92721af3b95e74349a")],
                    offline=("cifar10-jpeg", "imagefolder")),
    "imagefolder": Kind("any labelled image-folder tree (local or s3://): class/, or "
                        "train/ and test/", _folder_scan, _folder_load),
}
