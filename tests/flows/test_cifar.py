"""CIFAR batches: tarball and folder forms; unsafe pickles and archive members are refused."""
from __future__ import annotations

import pickle
import tarfile

import numpy as np
import pytest

from flows.config import PrepConfig
from flows.prep.build import prepare
from lightning_modules.splits import load_split
from lightning_modules.errors import DataError
from tests.datagen import RunsCode, cifar_members, write_cifar_tarball


def _prep(src, store):
    return prepare(PrepConfig(dataset="cifar10", source=str(src), store=str(store)))


def test_tarball_and_folder_give_the_same_arrays(tmp_path):
    a = _prep(write_cifar_tarball(tmp_path / "c.tar.gz"), tmp_path / "s1")
    folder = tmp_path / "x" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, data in cifar_members().items():
        (folder / name).write_bytes(data)
    b = _prep(tmp_path / "x", tmp_path / "s2")
    assert a.manifest["shape"] == [3, 32, 32]
    assert a.manifest["classes"] == [f"c{i}" for i in range(10)]
    assert a.manifest["counts_before_val"]["count"] == 100
    for split in ("train", "test"):
        for pa, pb in zip(load_split(a.uri, split), load_split(b.uri, split)):
            assert np.array_equal(pa, pb)


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    members = cifar_members()
    members["data_batch_3"] = pickle.dumps({b"data": RunsCode(marker), b"labels": []})
    with pytest.raises(DataError, match="data_batch_3: refers to posix.system"):
        _prep(write_cifar_tarball(tmp_path / "c.tar.gz", members), tmp_path / "s")
    assert not marker.exists()


def test_batch_with_wrong_structure(tmp_path):
    members = cifar_members()
    members["test_batch"] = pickle.dumps({b"data": [1, 2, 3], b"labels": [0]})
    with pytest.raises(DataError, match="test_batch: 'data' must be a uint8 array"):
        _prep(write_cifar_tarball(tmp_path / "c.tar.gz", members), tmp_path / "s")


@pytest.mark.parametrize("name,kind,match", [
    ("../escape.txt", tarfile.REGTYPE, "would land outside"),
    ("/etc/evil", tarfile.REGTYPE, "would land outside"),
    ("cifar-10-batches-py/link", tarfile.SYMTYPE, "link or special file"),
    ("cifar-10-batches-py/hard", tarfile.LNKTYPE, "link or special file"),
])
def test_unsafe_archive_members(tmp_path, name, kind, match):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = 4 if kind == tarfile.REGTYPE else 0
    info.linkname = "/etc/passwd" if kind != tarfile.REGTYPE else ""
    tar = write_cifar_tarball(tmp_path / "c.tar.gz", extra=[info])
    with pytest.raises(DataError, match=match):
        _prep(tar, tmp_path / "s")
    assert not (tmp_path / "s").exists() or not list((tmp_path / "s").rglob("*.npy"))


def test_truncated_tarball(tmp_path):
    tar = write_cifar_tarball(tmp_path / "c.tar.gz")
    tar.write_bytes(tar.read_bytes()[:5000])
    with pytest.raises(DataError, match="truncated or corrupt archive"):
        _prep(tar, tmp_path / "s")
