"""The datamodule: whole-batch indexing, normalisation, augmentation, and refusing bad data."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_modules.datamodule import (
    MissingDatasetError,
    PreparedData,
    ShuffledBatches,
    random_crop_flip,
)
from lightning_modules.errors import DataError


def test_batches_are_fetched_whole_and_normalised(tiny_dataset):
    _, uri = tiny_dataset
    dm = PreparedData(uri, batch_size=32)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (32, 1, 28, 28) and y.shape == (32,)
    xn, _ = dm.on_after_batch_transfer((dm.split("train").x, dm.split("train").y), 0)
    assert abs(float(xn.mean())) < 1e-3 and abs(float(xn.std()) - 1) < 1e-2  # train stats


def test_subset_and_batch_size_checks(tiny_dataset):
    _, uri = tiny_dataset
    dm = PreparedData(uri, batch_size=50, max_train_samples=40)
    with pytest.raises(ValueError, match="batch size 50 is larger than the training set \\(40\\)"):
        dm.setup("fit")


def test_an_evaluation_sample_is_the_same_images_whatever_the_runs_seed(tiny_dataset):
    _, uri = tiny_dataset
    whole = PreparedData(uri, batch_size=8).split("test")
    a = PreparedData(uri, batch_size=8, seed=1, max_eval_samples=10, max_train_samples=20)
    b = PreparedData(uri, batch_size=8, seed=2, max_eval_samples=10, max_train_samples=20)
    assert len(a.split("test")) == 10 < len(whole) and len(a.split("val")) <= 10
    assert torch.equal(a.split("test").x, b.split("test").x)
    assert torch.equal(a.split("val").y, b.split("val").y)
    assert not torch.equal(a.split("train").x, b.split("train").x)  # training: the run's seed


def test_crop_flip_keeps_shape_and_moves_pixels():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    g = torch.Generator().manual_seed(0)
    outs = [random_crop_flip(x, 2, g) for _ in range(5)]
    assert all(o.shape == x.shape for o in outs)
    assert any(not torch.equal(o, x) for o in outs)
    # each output image is a shifted/flipped window of its own input, never another image's
    assert all(o[1].min() >= x[1].min() for o in outs)


def test_tampered_array_is_refused(tiny_dataset):
    _, uri = tiny_dataset
    path = f"{uri}/train_x-00000.npy"
    arr = np.load(path)
    arr[0, 0, 0, 0] ^= 0xFF
    np.save(path, arr)
    with pytest.raises(DataError, match="does not match the manifest"):
        PreparedData(uri, batch_size=8).split("train")


def test_missing_dataset(tmp_path):
    with pytest.raises(MissingDatasetError, match="no prepared dataset"):
        PreparedData(str(tmp_path / "nothing"), batch_size=8)


def test_shuffled_batches_cover_every_image_once_per_epoch(tiny_dataset):
    dm = PreparedData(tiny_dataset[1], batch_size=7)
    loader = dm.train_dataloader()
    assert isinstance(loader.batch_sampler, ShuffledBatches)
    n = len(dm.split("train"))
    epochs = []
    for _ in range(2):
        batches = list(loader)
        assert len(batches) == len(loader) == -(-n // 7)
        assert [len(y) for _, y in batches[:-1]] == [7] * (len(batches) - 1)
        epochs.append(torch.cat([x for x, _ in batches]))
    ordered = dm.split("train").x
    for xs in epochs:  # every image exactly once, in a new order each epoch
        assert sorted(map(bytes, xs.numpy())) == sorted(map(bytes, ordered.numpy()))
    assert not torch.equal(epochs[0], epochs[1])


@pytest.fixture
def sharded(tmp_path, monkeypatch):
    """A prepared set whose splits span several shards (50 images each)."""
    from flows.config import PrepConfig
    from flows.prep import shards
    from flows.prep.build import prepare
    from tests.datagen import write_idx_set

    monkeypatch.setattr(shards, "SHARD_BYTES", 50 * 28 * 28)
    src = write_idx_set(tmp_path / "raw", n_train=300, n_test=60)
    return prepare(PrepConfig(dataset="mnist", source=str(src), store=str(tmp_path / "s"))).uri


def test_streamed_batches_are_the_held_ones_across_shards(sharded, tmp_path):
    from lightning_modules.streamed import StreamedBatches
    from lightning_modules.splits import load_split

    held = PreparedData(sharded, batch_size=8, stream=False, max_train_samples=200, seed=3)
    streamed = PreparedData(sharded, batch_size=8, stream=True, max_train_samples=200, seed=3,
                            cache_dir=str(tmp_path / "cache"))
    part = streamed.split("train")
    assert isinstance(part, StreamedBatches) and len(part) == 200
    assert len(streamed.manifest["shards"]["train"]) > 3  # a batch crosses shard boundaries
    idx = torch.randperm(200)[:64]
    xs, ys = part.__getitems__(idx)
    xh, yh = held.split("train").__getitems__(idx)
    assert torch.equal(xs, xh) and torch.equal(ys, yh)
    assert torch.equal(part.head(5), held.split("train").head(5))
    # The whole split, streamed, is the prepared split.
    x, y = load_split(sharded, "train")
    everything = PreparedData(sharded, batch_size=8, stream=True).split("train")
    xa, ya = everything.__getitems__(torch.arange(len(y)))
    assert np.array_equal(xa.numpy(), x) and np.array_equal(ya.numpy(), y)


def test_a_tampered_shard_is_refused_when_streamed(sharded):
    from lightning_modules import streamed

    path = f"{sharded}/train_x-00001.npy"
    data = bytearray(open(path, "rb").read())
    data[-1] ^= 0xFF
    open(path, "wb").write(bytes(data))
    streamed._verified.clear()
    with pytest.raises(DataError, match="train_x-00001.npy: SHA-256 does not match"):
        PreparedData(sharded, batch_size=8, stream=True).split("train")


def test_sharded_prep_keeps_the_statistics_and_counts_of_the_whole_split(sharded):
    from lightning_modules.splits import load_split
    from lightning_modules.datamodule import load_manifest

    m = load_manifest(sharded)
    x, y = load_split(sharded, "train")
    assert m["mean"][0] == pytest.approx(float(x.mean()) / 255, abs=1e-9)
    assert m["std"][0] == pytest.approx(float((x / 255.0).std()), abs=1e-6)
    assert m["splits"]["train"]["count"] == len(y) == sum(s["count"] for s in m["shards"]["train"])
    assert max(s["count"] for s in m["shards"]["train"]) == 50


def test_evaluation_splits_stream_too_and_score_as_held(sharded, tmp_path, monkeypatch):
    """A set whose training split is too large to hold has its validation and test splits
    streamed too (a large folder's tenth is still large), and the test metrics over them are
    the held split's."""
    from lightning_modules.bundle import Predictor
    from lightning_modules.config import ModelConfig
    from lightning_modules.evaluation import test_metrics
    from lightning_modules.nets import build_net
    from lightning_modules.streamed import StreamedBatches

    held = PreparedData(sharded, batch_size=8)
    assert not any(isinstance(held.split(s), StreamedBatches) for s in ("train", "val", "test"))
    monkeypatch.setattr("lightning_modules.datamodule.IN_MEMORY_BYTES", 1000)  # chosen by size
    streamed = PreparedData(sharded, batch_size=8, cache_dir=str(tmp_path / "c"))
    assert all(isinstance(streamed.split(s), StreamedBatches) for s in ("train", "val", "test"))
    info = {"shape": held.shape, "classes": held.classes, "mean": held.manifest["mean"],
            "std": held.manifest["std"]}
    torch.manual_seed(0)
    pred = Predictor(build_net(ModelConfig(family="bp"), held.shape, len(held.classes)), info)
    a = test_metrics(pred, held.split("test"), batch=7)
    b = test_metrics(pred, streamed.split("test"))
    assert a["confusion"] == b["confusion"] and a["test_count"] == b["test_count"] == 60
    assert np.array_equal(a["predictions"], b["predictions"])


def test_an_evaluation_batch_stays_small_however_large_the_images():
    from lightning_modules.datamodule import EVAL_BATCH_BYTES, eval_batch

    assert eval_batch((1, 28, 28)) == 1024  # small images: the cap
    big = eval_batch((3, 224, 224))
    assert 1 <= big < 1024 and big * 4 * 3 * 224 * 224 <= EVAL_BATCH_BYTES
    assert eval_batch((3, 4096, 4096)) == 1  # never none
