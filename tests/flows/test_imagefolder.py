"""Image-folder trees: every format and mode converts; bad files are skipped and listed, or fail."""
from __future__ import annotations

import pytest

from flows.config import PrepConfig
from flows.prep.build import prepare
from lightning_modules.errors import DataError
from lightning_modules.splits import load_split
from tests.datagen import image_bytes, write_tree


def _prep(src, store, **kw):
    return prepare(PrepConfig(dataset="imagefolder", source=str(src), store=str(store), **kw))


@pytest.mark.parametrize("fmt,mode", [
    ("PNG", "L"), ("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "P"), ("PNG", "I;16"),
    ("JPEG", "L"), ("JPEG", "RGB"), ("JPEG", "CMYK"), ("BMP", "RGB"), ("GIF", "P"),
    ("WEBP", "RGB"), ("WEBP", "RGBA"),
])
def test_every_format_and_mode_converts(tmp_path, fmt, mode):
    root = write_tree(tmp_path / "tree", classes=2, per_class=3)
    for f in root.rglob("0.png"):  # one file per class folder in the format under test
        f.with_name("other." + fmt.lower()).write_bytes(image_bytes(fmt, mode, (20, 14)))
        f.unlink()
    m = _prep(root, tmp_path / "s", image_size=16, channels=3, workers=1).manifest
    assert m["shape"] == [3, 16, 16]
    assert m["skipped"]["count"] == 0
    assert m["counts_before_val"]["count"] + m["splits"]["test"]["count"] == 12


def test_shape_is_inferred_and_single_tree_is_split(tmp_path):
    root = write_tree(tmp_path / "photos", classes=3, per_class=10, split=False, size=(24, 24))
    res = _prep(root, tmp_path / "s", test_fraction=0.2, val_fraction=0.01, workers=1)
    m = res.manifest
    assert m["name"] == "photos" and m["shape"] == [1, 24, 24]
    assert m["classes"] == ["class0", "class1", "class2"]
    assert m["splits"]["test"]["per_class"] == [2, 2, 2]
    # A validation image per class however small the share: selection never falls to test.
    assert m["splits"]["val"]["per_class"] == [1, 1, 1]
    assert m["splits"]["train"]["per_class"] == [7, 7, 7]
    x, y = load_split(res.uri, "train")
    assert all(int(x[i].mean()) == 40 * y[i] + 10 for i in range(len(y)))  # labels follow pixels


def _broken_tree(tmp_path):
    root = write_tree(tmp_path / "tree", classes=2, per_class=4)
    c0 = root / "train" / "class0"
    (c0 / "empty.png").write_bytes(b"")
    (c0 / "text.png").write_bytes(b"this is not an image")
    png = image_bytes("PNG", "RGB", (64, 64), 3) + b""
    (c0 / "truncated.png").write_bytes(png[: len(png) // 2])
    (c0 / "bomb.png").write_bytes(image_bytes("PNG", "L", (3000, 3000), 0))
    (c0 / "notes.txt").write_text("stray")
    (root / "README").write_text("stray at the top")
    return root


def test_bad_files_are_skipped_and_listed(tmp_path):
    res = _prep(_broken_tree(tmp_path), tmp_path / "s", max_pixels=1_000_000, workers=2)
    skipped = dict((p.rsplit("/", 1)[-1], why) for p, why in res.manifest["skipped"]["files"])
    assert skipped["empty.png"] == "empty file"
    assert skipped["text.png"] == "not an image"
    assert skipped["truncated.png"].startswith("unreadable image")
    assert skipped["bomb.png"].startswith("decompression bomb")
    assert "not an image file" in skipped["notes.txt"]
    assert "stray" in skipped["README"]
    assert res.manifest["skipped"]["count"] == 6
    assert res.manifest["counts_before_val"]["per_class"] == [4, 4]
    card = open(f"{res.uri}/card.md").read()
    assert "Skipped files: 6" in card and "bomb.png" in card


def test_strict_turns_skips_into_errors(tmp_path):
    with pytest.raises(DataError, match="--strict"):
        _prep(_broken_tree(tmp_path), tmp_path / "s", strict=True, max_pixels=1_000_000)
    assert not list((tmp_path / "s").rglob("manifest.json"))


def test_empty_class_folder_is_an_error(tmp_path):
    root = write_tree(tmp_path / "tree", classes=2, per_class=2)
    (root / "train" / "class1").mkdir(exist_ok=True)
    for f in (root / "train" / "class1").iterdir():
        f.unlink()
    with pytest.raises(DataError, match=r"\['class1'\] in 'train' hold no images"):
        _prep(root, tmp_path / "s")


def test_parallel_decode_matches_serial(tmp_path):
    root = write_tree(tmp_path / "tree", classes=3, per_class=7, mode="RGB")
    a = _prep(root, tmp_path / "s1", workers=1)
    b = _prep(root, tmp_path / "s2", workers=2)
    assert a.manifest["files"]["train_x-00000.npy"]["sha256"] == \
        b.manifest["files"]["train_x-00000.npy"]["sha256"]
    assert a.manifest["shape"] == [3, 12, 12]
