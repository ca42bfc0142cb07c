"""prepare(cfg): raw source → split, normalised-stats, content-addressed dataset in a store."""
from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional

import numpy as np

from flows.config import PrepConfig
from flows.prep import card, imagefolder
from flows.prep.kinds import KINDS
from flows.prep.sources import fetch_canonical
from lightning_modules import layout
from lightning_modules.errors import DataError
from lightning_modules.store import (
    filesystem,
    join,
    move_tree,
    normalize,
    read_json,
    remove,
    remove_quietly,
    retrying,
    write_bytes,
    write_json,
    write_npy,
)
from lightning_modules.store_check import check_store

log = logging.getLogger(__name__)
FORMAT = 1
MANIFEST = layout.MANIFEST
ARRAYS = ["train_x", "train_y", "val_x", "val_y", "test_x", "test_y"]
# Options that change the prepared bytes; anything else (workers, cache) does not enter the key.
KEYED = ["dataset", "val_fraction", "test_fraction", "seed", "image_size", "channels",
         "strict", "max_pixels"]


@dataclass
class PrepResult:
    uri: str
    manifest: dict
    cache_hit: bool


def dataset_key(fingerprint: str, cfg: PrepConfig) -> str:
    opts = {k: getattr(cfg, k) for k in KEYED}
    return layout.cache_key({"format": FORMAT, "source": fingerprint, "options": opts},
                            length=16)


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


def channel_stats(x: np.ndarray, chunk: int = 8192) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of pixel values scaled to [0, 1], in chunks (no float copy)."""
    c = x.shape[1]
    s, s2, n = np.zeros(c), np.zeros(c), 0
    for i in range(0, len(x), chunk):
        part = x[i:i + chunk].astype(np.float64) / 255.0
        s += part.sum(axis=(0, 2, 3))
        s2 += (part ** 2).sum(axis=(0, 2, 3))
        n += part.shape[0] * part.shape[2] * part.shape[3]
    mean = s / max(n, 1)
    std = np.sqrt(np.maximum(s2 / max(n, 1) - mean ** 2, 1e-12))
    return mean.tolist(), std.tolist()


def _source_and_fingerprint(cfg: PrepConfig) -> tuple[str, str, Optional[imagefolder.Tree]]:
    kind = KINDS[cfg.dataset]
    source = normalize(cfg.source) if cfg.source else \
        fetch_canonical(cfg.dataset, kind.canonical, cfg.cache_dir)
    fingerprint, tree = kind.scan(source)
    return source, fingerprint, tree


def _load(cfg: PrepConfig, source: str, tree: Optional[imagefolder.Tree]) -> dict:
    raw = KINDS[cfg.dataset].load(cfg, source, tree)
    if "all_x" in raw:  # one tree: carve out the test split
        train, test = stratified_split(raw["all_y"], cfg.test_fraction, cfg.seed + 1)
        raw.update(train_x=raw["all_x"][train], train_y=raw["all_y"][train],
                   test_x=raw["all_x"][test], test_y=raw["all_y"][test])
        del raw["all_x"], raw["all_y"]
    return raw


def _damage(uri: str, manifest: dict) -> Optional[str]:
    """The first file of a prepared dataset that is missing or differs from its manifest."""
    fs, path = filesystem(uri)
    for rel, meta in sorted((manifest.get("files") or {}).items()):
        try:
            data = fs.cat_file(join(path, rel))
        except FileNotFoundError:
            return f"{rel} is missing"
        if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
            return f"{rel} does not match its SHA-256"
    return None if manifest.get("files") else "its manifest lists no files"


def _split_info(y: np.ndarray, n_classes: int) -> dict:
    return {"count": int(len(y)), "per_class": np.bincount(y, minlength=n_classes).tolist()}


def prepare(cfg: PrepConfig) -> PrepResult:
    """Prepare cfg's dataset in its store, or return the existing one for unchanged inputs."""
    name, store = cfg.resolved_name(), check_store(cfg.store)
    source, fingerprint, tree = _source_and_fingerprint(cfg)
    key = dataset_key(fingerprint, cfg)
    uri = layout.dataset_uri(store, name, key)
    remove_stale_temporaries(uri)  # what a failed run of the same inputs left
    manifest = read_json(join(uri, MANIFEST))
    if manifest is not None and manifest.get("format") == FORMAT:
        problem = _damage(uri, manifest)
        if problem is None:
            log.info("%s: prepared already at %s (cache hit)", name, uri)
            write_json(layout.latest(layout.dataset_dir(store, name)), {"key": key, "uri": uri})
            return PrepResult(uri, manifest, cache_hit=True)
        log.warning("%s: the prepared copy at %s is damaged (%s): preparing it again", name,
                    uri, problem)
    raw = _load(cfg, source, tree)
    n = len(raw["classes"])
    keep, held = stratified_split(raw["train_y"], cfg.val_fraction, cfg.seed)
    arrays = {"train_x": raw["train_x"][keep], "train_y": raw["train_y"][keep],
              "val_x": raw["train_x"][held], "val_y": raw["train_y"][held],
              "test_x": raw["test_x"], "test_y": raw["test_y"]}
    if len(arrays["train_y"]) == 0 or len(arrays["test_y"]) == 0:
        raise DataError(f"{source}: no readable images left in train or test")
    mean, std = channel_stats(arrays["train_x"])
    manifest = {
        "format": FORMAT, "name": name, "dataset": cfg.dataset, "key": key, "uri": uri,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": {"url": source, "fingerprint": fingerprint, "canonical": cfg.source is None},
        "options": {k: getattr(cfg, k) for k in KEYED},
        "classes": raw["classes"], "shape": list(arrays["train_x"].shape[1:]),
        "mean": mean, "std": std,
        "splits": {s: _split_info(arrays[f"{s}_y"], n) for s in ("train", "val", "test")},
        "counts_before_val": _split_info(raw["train_y"], n),
        "skipped": {"count": len(raw["skipped"]), "files": [list(s) for s in raw["skipped"]]},
    }
    _publish(uri, arrays, manifest, layout.latest(layout.dataset_dir(store, name)))
    return PrepResult(uri, manifest, cache_hit=False)


def _owner() -> str:
    """Who writes a temporary prefix: host, process and start time (a later run can tell
    whether the writer is gone)."""
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40]
    return f"{host}~{os.getpid()}~{int(time.time())}"


def _abandoned(owner: str, max_age_s: float = 24 * 3600) -> bool:
    """A temporary prefix's writer is gone: a dead process on this host, or older than a day."""
    try:
        host, pid, started = owner.split("~")
        if time.time() - int(started) > max_age_s:
            return True
        if host != _owner().split("~")[0]:
            return False
        os.kill(int(pid), 0)
        return False
    except ProcessLookupError:
        return True
    except (ValueError, PermissionError):
        return False


def remove_stale_temporaries(uri: str) -> list[str]:
    """Remove `<uri>.tmp-*` prefixes that a failed or killed prepare of the same inputs left."""
    fs, path = filesystem(uri)
    found = retrying(uri, "listing", lambda: fs.glob(f"{path}.tmp-*"))
    stale = [p for p in found if _abandoned(p.rsplit(".tmp-", 1)[1])]
    for p in stale:
        log.info("removing %s, left by a prepare that did not finish", p)
        remove(uri + p[len(path):])
    return stale


def _publish(uri: str, arrays: dict[str, np.ndarray], manifest: dict, latest: str) -> None:
    """Write everything under a temporary prefix and move it into place, the manifest (which
    makes it trusted) last, and latest.json (which makes it current) right after it. On failure
    the temporary prefix is removed at once (or, if the store is down, by the next run)."""
    tmp = f"{uri}.tmp-{_owner()}"
    try:
        files = {f"{k}.npy": write_npy(join(tmp, f"{k}.npy"), v) for k, v in arrays.items()}
        files["samples.png"] = write_bytes(
            join(tmp, "samples.png"),
            card.sample_grid(arrays["train_x"], arrays["train_y"], manifest["classes"]))
        manifest["files"] = files
        files["card.md"] = write_bytes(join(tmp, "card.md"), card.render_card(manifest).encode())
        write_json(join(tmp, MANIFEST), manifest)
        remove(uri)  # leftovers of an interrupted run hold no manifest and are not trusted
        move_tree(tmp, uri, last=MANIFEST, keep_source=True)
        _point_latest(uri, latest, {"key": manifest["key"], "uri": uri})
    except BaseException:
        remove_quietly(tmp)
        raise
    remove_quietly(tmp)
    log.info("prepared %s: %s", manifest["name"], uri)


def _point_latest(uri: str, latest: str, pointer: dict) -> None:
    """latest.json never points at an untrusted tree: it is written only after the manifest.
    If it cannot be written, the manifest is taken out again when the store allows; if the
    store is down, the tree stays complete but not current, and the next run (a cache hit)
    writes the pointer."""
    try:
        write_json(latest, pointer)
    except BaseException:
        remove_quietly(join(uri, MANIFEST))
        raise
