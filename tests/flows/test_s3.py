"""Prep from and to s3:// against moto's S3 server on loopback."""
from __future__ import annotations

import hashlib

import s3fs

from flows.config import PrepConfig
from flows.prep.build import prepare
from tests.datagen import write_idx_set, write_tree


def test_idx_from_s3_to_s3_with_cache_hit(tmp_path, s3_bucket):
    fs = s3fs.S3FileSystem()
    src = write_idx_set(tmp_path / "src")
    fs.put(str(src) + "/", f"{s3_bucket}/raw/mnist/", recursive=True)
    cfg = PrepConfig(dataset="mnist", source=f"{s3_bucket}/raw/mnist", store=f"{s3_bucket}/store")
    res = prepare(cfg)
    assert res.uri.startswith(f"{s3_bucket}/store/datasets/mnist/")
    for name, meta in res.manifest["files"].items():
        assert hashlib.sha256(fs.cat_file(f"{res.uri}/{name}")).hexdigest() == meta["sha256"]
    assert not [p for p in fs.find(f"{s3_bucket}/store") if ".tmp-" in p]
    assert prepare(cfg).cache_hit


def test_imagefolder_from_s3(tmp_path, s3_bucket):
    fs = s3fs.S3FileSystem()
    write_tree(tmp_path / "tree", classes=2, per_class=3)
    fs.put(str(tmp_path / "tree") + "/", f"{s3_bucket}/tree/", recursive=True)
    res = prepare(PrepConfig(dataset="imagefolder", source=f"{s3_bucket}/tree",
                             store=str(tmp_path / "store"), workers=2))
    assert res.manifest["name"] == "tree"
    assert res.manifest["counts_before_val"]["per_class"] == [3, 3]


def test_a_streamed_split_is_fetched_once_into_the_cache_and_checked(tmp_path, s3_bucket):
    import numpy as np
    import pytest
    import torch

    from lightning_modules.datamodule import PreparedData
    from lightning_modules.errors import DataError
    from lightning_modules.splits import load_split

    fs = s3fs.S3FileSystem()
    cfg = PrepConfig(dataset="mnist", source=str(write_idx_set(tmp_path / "src")),
                     store=f"{s3_bucket}/store")
    uri = prepare(cfg).uri
    cache = tmp_path / "cache"
    part = PreparedData(uri, 8, stream=True, cache_dir=str(cache)).split("train")
    x, y = load_split(uri, "train")
    got = part.__getitems__(torch.arange(len(y)))
    assert np.array_equal(got[0].numpy(), x) and np.array_equal(got[1].numpy(), y)
    cached = {p.name for p in cache.iterdir()}
    shard = prepare(cfg).manifest["shards"]["train"][0]["x"]
    assert cached == {prepare(cfg).manifest["files"][shard]["sha256"] + ".npy"}
    # A shard changed in the bucket is refused when a machine without it fetches it.
    data = fs.cat_file(f"{uri}/{shard}")
    fs.pipe_file(f"{uri}/{shard}", data[:-1] + bytes([data[-1] ^ 0xFF]))
    with pytest.raises(DataError, match="SHA-256 does not match the manifest"):
        PreparedData(uri, 8, stream=True, cache_dir=str(tmp_path / "other")).split("train")
    assert not list((tmp_path / "other").glob("*.npy"))  # nothing half-fetched kept
