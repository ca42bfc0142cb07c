"""prepare(cfg): raw source → split, normalised-stats, content-addressed dataset in a store."""
from __future__ import annotations

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
from flows.prep.shards import plan_splits, write_splits
from flows.prep.sources import fetch_canonical
from flows.progress import Bar
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
    sha256_of,
    write_bytes,
    write_json,
)
from lightning_modules.store_check import check_store

log = logging.getLogger(__name__)
FORMAT = 2  # 2: the splits as shards listed in the manifest
MANIFEST = layout.MANIFEST
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


def _source_and_fingerprint(cfg: PrepConfig) -> tuple[str, str, Optional[imagefolder.Tree]]:
    kind = KINDS[cfg.dataset]
    source = normalize(cfg.source) if cfg.source else \
        fetch_canonical(cfg.dataset, kind.canonical, cfg.cache_dir)
    fingerprint, tree = kind.scan(source)
    return source, fingerprint, tree


def _damage(uri: str, manifest: dict) -> Optional[str]:
    """The first file of a prepared dataset that is missing or differs from its manifest."""
    for rel, meta in sorted((manifest.get("files") or {}).items()):
        try:
            digest = sha256_of(join(uri, rel))
        except FileNotFoundError:
            return f"{rel} is missing"
        if digest != meta.get("sha256"):
            return f"{rel} does not match its SHA-256"
    return None if manifest.get("files") else "its manifest lists no files"


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
    tmp = f"{uri}.tmp-{_owner()}"
    try:
        manifest, sample = _write(cfg, source, tree, tmp, {
            "format": FORMAT, "name": name, "dataset": cfg.dataset, "key": key, "uri": uri,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "source": {"url": source, "fingerprint": fingerprint, "canonical": cfg.source is None},
            "options": {k: getattr(cfg, k) for k in KEYED}})
        _publish(uri, tmp, manifest, sample, layout.latest(layout.dataset_dir(store, name)))
    except BaseException:
        remove_quietly(tmp)
        raise
    return PrepResult(uri, manifest, cache_hit=False)


def _write(cfg: PrepConfig, source: str, tree: Optional[imagefolder.Tree], tmp: str,
           manifest: dict) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
    """Every split's shards under tmp, in bounded memory; the manifest and the card's samples."""
    with KINDS[cfg.dataset].load(cfg, source, tree) as src:
        plan = plan_splits(src, cfg.val_fraction, cfg.test_fraction, cfg.seed)
        total = sum(len(idx) for _, idx in plan.values())
        with Bar(f"preparing {cfg.resolved_name()}", total) as bar:
            writers = write_splits(src, plan, tmp, bar)
    if not writers["train"].info()["count"] or not writers["test"].info()["count"]:
        raise DataError(f"{source}: no readable images left in train or test")
    mean, std = writers["train"].stats()
    before_val = writers["train"].per_class + writers["val"].per_class
    manifest.update({
        "classes": src.classes, "shape": list(src.shape()), "mean": mean, "std": std,
        "splits": {s: w.info() for s, w in writers.items()},
        "shards": {s: w.shards for s, w in writers.items()},
        "counts_before_val": {"count": int(before_val.sum()), "per_class": before_val.tolist()},
        "skipped": {"count": len(src.skipped), "files": [list(s) for s in src.skipped]},
        "files": {f: meta for w in writers.values() for f, meta in w.files.items()}})
    return manifest, writers["train"].sample()


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


def _publish(uri: str, tmp: str, manifest: dict, sample: tuple[np.ndarray, np.ndarray],
             latest: str) -> None:
    """The shards are under the temporary prefix already: add the card, then move it all into
    place, the manifest (which makes it trusted) last, and latest.json (which makes it current)
    right after it. The caller removes the temporary prefix on failure (or, if the store is
    down, the next run does)."""
    files = manifest["files"]
    files["samples.png"] = write_bytes(join(tmp, "samples.png"),
                                       card.sample_grid(*sample, manifest["classes"]))
    files["card.md"] = write_bytes(join(tmp, "card.md"), card.render_card(manifest).encode())
    write_json(join(tmp, MANIFEST), manifest)
    remove(uri)  # leftovers of an interrupted run hold no manifest and are not trusted
    move_tree(tmp, uri, last=MANIFEST, keep_source=True)
    _point_latest(uri, latest, {"key": manifest["key"], "uri": uri})
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
