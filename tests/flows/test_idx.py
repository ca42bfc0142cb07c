"""IDX parsing: good files load; each kind of broken file is a DataError naming the file."""
from __future__ import annotations

import gzip

import numpy as np
import pytest

from flows.config import PrepConfig
from flows.prep.build import prepare
from lightning_modules.errors import DataError
from lightning_modules.splits import load_split
from tests.datagen import idx_bytes, write_idx_set

TRAIN_X = "train-images-idx3-ubyte.gz"
TRAIN_Y = "train-labels-idx1-ubyte.gz"


def _prep(src, store):
    return prepare(PrepConfig(dataset="mnist", source=str(src), store=str(store)))


def test_generated_idx_prepares_with_stratified_val(tmp_path):
    src = write_idx_set(tmp_path / "src", n_train=200, n_test=50)
    res = _prep(src, tmp_path / "store")
    m = res.manifest
    assert m["shape"] == [1, 28, 28]
    assert m["counts_before_val"]["per_class"] == [20] * 10
    assert m["splits"]["val"]["per_class"] == [2] * 10  # 10% of every class
    assert m["splits"]["train"]["count"] == 180 and m["splits"]["test"]["count"] == 50
    x, _ = load_split(res.uri, "train")
    assert x.dtype == np.uint8 and x.shape == (180, 1, 28, 28)


def _assert_fails(tmp_path, name, data, match):
    src = write_idx_set(tmp_path / "src")
    (src / name).write_bytes(data)
    with pytest.raises(DataError, match=match) as e:
        _prep(src, tmp_path / "store")
    assert name in str(e.value)
    assert not list((tmp_path / "store").rglob("manifest.json"))


def test_truncated_gzip(tmp_path):
    good = gzip.compress(idx_bytes(np.zeros((200, 28, 28))))
    _assert_fails(tmp_path, TRAIN_X, good[: len(good) // 2], "truncated or corrupt gzip")


def test_not_gzip(tmp_path):
    _assert_fails(tmp_path, TRAIN_X, b"plain bytes, no gzip header", "not a gzip file")


def test_wrong_magic(tmp_path):
    data = bytearray(idx_bytes(np.zeros((200, 28, 28))))
    data[2] = 0x0D  # float type code
    _assert_fails(tmp_path, TRAIN_X, gzip.compress(bytes(data)), "wrong IDX magic")


def test_wrong_dimensions(tmp_path):
    _assert_fails(tmp_path, TRAIN_X, gzip.compress(idx_bytes(np.zeros((200, 784)))),
                  "2 dimensions, expected 3")


def test_truncated_payload(tmp_path):
    data = idx_bytes(np.zeros((200, 28, 28)))[:-100]
    _assert_fails(tmp_path, TRAIN_X, gzip.compress(data), "IDX data truncated")


def test_count_mismatch(tmp_path):
    _assert_fails(tmp_path, TRAIN_Y, gzip.compress(idx_bytes(np.zeros(150))),
                  "200 images but .* has 150 labels")


def test_label_out_of_range(tmp_path):
    y = np.arange(200) % 10
    y[7] = 12
    _assert_fails(tmp_path, TRAIN_Y, gzip.compress(idx_bytes(y)), "label 12 out of range")


def test_missing_file(tmp_path):
    src = write_idx_set(tmp_path / "src")
    (src / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: file is missing"):
        _prep(src, tmp_path / "store")
