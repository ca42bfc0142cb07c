"""The prep contract: content-addressed, cached, hashed in the manifest, nothing half-published."""
from __future__ import annotations

import hashlib
import json
import os

import pytest

from flows.config import PrepConfig
from flows.prep import build
from flows.prep.build import prepare
from tests.conftest import shared_dataset
from tests.datagen import write_idx_set

MNIST_TRAIN = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def _cfg(src, store, **kw):
    return PrepConfig(dataset="mnist", source=str(src), store=str(store), **kw)


def test_second_run_is_a_cache_hit_and_rewrites_nothing(tmp_path):
    src = write_idx_set(tmp_path / "src")
    first = prepare(_cfg(src, tmp_path / "s"))
    stamps = {p: os.stat(p).st_mtime_ns for p in (tmp_path / "s").rglob("*.npy")}
    second = prepare(_cfg(src, tmp_path / "s"))
    assert not first.cache_hit and second.cache_hit and second.uri == first.uri
    assert stamps == {p: os.stat(p).st_mtime_ns for p in (tmp_path / "s").rglob("*.npy")}


def test_a_damaged_prepared_copy_is_prepared_again_not_trusted(tmp_path, caplog):
    src = write_idx_set(tmp_path / "src")
    first = prepare(_cfg(src, tmp_path / "s"))
    arr = os.path.join(first.uri, "train_x-00000.npy")
    good = open(arr, "rb").read()
    with open(arr, "r+b") as f:  # one pixel altered after the manifest was written
        f.seek(len(good) - 1)
        f.write(bytes([good[-1] ^ 0xFF]))
    again = prepare(_cfg(src, tmp_path / "s"))
    assert not again.cache_hit and again.uri == first.uri
    assert open(arr, "rb").read() == good
    assert "is damaged (train_x-00000.npy does not match its SHA-256): preparing it again" in caplog.text


def test_changed_input_or_option_gives_a_new_uri(tmp_path):
    src = write_idx_set(tmp_path / "src")
    base = prepare(_cfg(src, tmp_path / "s")).uri
    assert prepare(_cfg(src, tmp_path / "s", seed=1)).uri != base
    write_idx_set(src, seed=5)
    assert prepare(_cfg(src, tmp_path / "s")).uri != base
    latest = json.loads((tmp_path / "s/datasets/mnist/latest.json").read_text())
    assert latest["uri"] != base


def test_manifest_hashes_match_the_files(tmp_path):
    res = prepare(_cfg(write_idx_set(tmp_path / "src"), tmp_path / "s"))
    files = res.manifest["files"]
    assert {"train_x-00000.npy", "val_y-00000.npy", "test_x-00000.npy", "samples.png",
            "card.md"} <= set(files)
    for name, meta in files.items():
        data = open(f"{res.uri}/{name}", "rb").read()
        assert hashlib.sha256(data).hexdigest() == meta["sha256"] and len(data) == meta["bytes"]


def test_interrupted_prep_leaves_no_manifest_and_is_redone(tmp_path, monkeypatch):
    src = write_idx_set(tmp_path / "src")

    def crash(*a, **k):
        raise KeyboardInterrupt  # as if the process were stopped midway through writing

    monkeypatch.setattr(build.card, "sample_grid", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare(_cfg(src, tmp_path / "s"))
    assert not list((tmp_path / "s").rglob("manifest.json"))
    assert not [p for p in (tmp_path / "s").rglob("*") if ".tmp-" in p.name]
    monkeypatch.undo()
    res = prepare(_cfg(src, tmp_path / "s"))
    assert not res.cache_hit and os.path.exists(f"{res.uri}/manifest.json")


@pytest.mark.parametrize("name,first", [("mnist", MNIST_TRAIN), ("fashion-mnist", [6000] * 10)])
def test_offline_copies_prepare_end_to_end(tmp_path, name, first):
    res = prepare(PrepConfig(dataset=name, source=str(shared_dataset(name)), store=str(tmp_path)))
    m = res.manifest
    assert m["counts_before_val"]["per_class"] == first
    assert m["splits"]["test"]["count"] == 10000
    assert m["splits"]["train"]["count"] + m["splits"]["val"]["count"] == 60000
    assert m["shape"] == [1, 28, 28] and len(m["classes"]) == 10
    assert 0.1 < m["mean"][0] < 0.4 and 0.2 < m["std"][0] < 0.5
