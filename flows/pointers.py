"""Pointers into the store (runs/latest.json, the champions) are derived state: written after
what they point at, and, when unreadable, rebuilt or ignored with a warning, never a reason
for a reader or the next run to stop. No Prefect here: the page reads them too."""
from __future__ import annotations

import logging
from typing import Optional

from lightning_modules import layout
from lightning_modules.errors import DataError
from lightning_modules.store import filesystem, join, read_json

log = logging.getLogger(__name__)
MANIFEST = layout.MANIFEST


def read_pointer(uri: str, keys: set[str]) -> Optional[dict]:
    """A pointer file (runs/latest.json, a champion): None when absent, and None with a warning
    when unreadable (cut short, tampered): derived state is rebuilt, never a reason to stop."""
    try:
        obj = read_json(uri)
    except DataError as e:
        log.warning("ignoring an unreadable pointer: %s", e)
        return None
    if obj is not None and not (isinstance(obj, dict) and keys <= set(obj)):
        log.warning("ignoring the pointer %s: it lacks %s", uri, sorted(keys))
        return None
    return obj


def latest_run(store: str) -> Optional[dict]:
    """{"run_id", "uri"} of the newest published run: runs/latest.json, or, when that is
    missing or unreadable, the run whose manifest was published last (a warning says so)."""
    runs = layout.runs_dir(store)
    pointer = read_pointer(layout.latest(runs), {"run_id", "uri"})
    if pointer is not None:
        return pointer
    fs, path = filesystem(runs)
    newest: Optional[dict] = None
    for m in fs.glob(f"{path}/*/{MANIFEST}") if fs.exists(path) else []:
        rel = m[len(path) + 1:].split("/")[0]
        try:
            manifest = read_json(join(runs, rel, MANIFEST)) or {}
        except DataError:
            continue
        if newest is None or manifest.get("published_at", 0) > newest["published_at"]:
            newest = {"run_id": manifest.get("run_id", rel), "uri": join(runs, rel),
                      "published_at": manifest.get("published_at", 0)}
    if newest is not None and fs.exists(f"{path}/{layout.LATEST}"):
        log.warning("runs/latest.json unreadable: the newest run by its manifest is %s",
                    newest["run_id"])
    return None if newest is None else {"run_id": newest["run_id"], "uri": newest["uri"]}
