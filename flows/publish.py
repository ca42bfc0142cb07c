"""Publishing: a run folder of models, metrics, plots and repro capsules, its manifest (written
last; readers trust only what it lists) and the champion pointers."""
from __future__ import annotations

import hashlib
import statistics
import time
from typing import Any

from flows.errors import DataError
from flows.plots import curves_png
from flows.repro import capsule
from flows.store import (filesystem, join, normalize, read_json, remove_quietly, write_bytes,
                         write_json)
from lightning_modules import metrics as M
from lightning_modules.bundle import INFO, WEIGHTS

MANIFEST = "manifest.json"
BUNDLE_FILES = (WEIGHTS, INFO, "metrics.json", "confusion.json", "confusion.png",
                "test_predictions.npy")
Files = dict[str, dict[str, Any]]  # path inside the run folder → {"sha256", "bytes"}


def run_uri(store: str, run_id: str) -> str:
    return join(normalize(store), "runs", run_id)


def chosen_seed(infos: list[dict]) -> int:
    """The published model among the seeds: the best on validation (never on test)."""
    return max(range(len(infos)), key=lambda i: infos[i].get("metrics", {}).get(M.SCORE, -1.0))


def seed_summary(metrics: list[dict]) -> dict[str, Any]:
    accs = [m[M.TEST_ACC] for m in metrics]
    return {"test_accs": accs, "mean": statistics.fmean(accs),
            "std": statistics.stdev(accs) if len(accs) > 1 else 0.0}


def publish_branch(run: str, rec: dict) -> Files:
    """Copy the chosen bundle and its evaluation into `<run>/<dataset>/<family>/`, with training
    curves, the tuning result, per-seed results and the repro capsule."""
    rel = f"{rec['dataset']}/{rec['family']}"
    infos = [read_json(join(b, INFO)) for b in rec["bundles"]]
    metrics = [read_json(u) for u in rec["metrics_uris"]]
    pick = chosen_seed(infos)
    src_fs, src = filesystem(rec["bundles"][pick])
    files: Files = {}
    for name in BUNDLE_FILES:
        files[f"{rel}/{name}"] = write_bytes(join(run, rel, name), src_fs.cat_file(join(src, name)))
    tune_best = read_json(rec["tune_uri"]) if rec.get("tune_uri") else None
    tuning = None if tune_best is None else {
        "best": tune_best, "trials": read_json(rec["tune_uri"].rsplit("/", 1)[0] + "/trials.json"),
        "requested_trials": rec.get("trials_requested"), "budget_note": rec.get("budget_note")}
    extra = {"tuning.json": tuning, "seeds.json": {"chosen_seed_index": pick,
                                                   **seed_summary(metrics)},
             "repro.json": capsule(infos, tune_best)}
    for name, obj in extra.items():
        files[f"{rel}/{name}"] = write_json(join(run, rel, name), obj)
    title = f"{rec['dataset']} / {rec['family']}"
    files[f"{rel}/curves.png"] = write_bytes(join(run, rel, "curves.png"),
                                             curves_png({title: infos[pick].get("history", [])}))
    return files


def write_manifest(run: str, run_id: str, files: Files, extra: dict | None = None) -> dict:
    """The run's manifest, written last: every published file with its size and SHA-256; then
    `runs/latest.json` in the same step: if the pointer cannot be written the manifest comes out
    again, so a run is visible and trusted, or neither."""
    manifest = {"run_id": run_id, "published_at": time.time(), "files": dict(sorted(files.items())),
                **(extra or {})}
    write_json(join(run, MANIFEST), manifest)
    try:
        write_json(join(run.rsplit("/", 1)[0], "latest.json"), {"run_id": run_id, "uri": run})
    except BaseException:
        remove_quietly(join(run, MANIFEST))
        raise
    return manifest


def verify_run(run: str) -> dict:
    """Read a run's manifest and check every listed file; raise DataError naming any mismatch."""
    manifest = read_json(join(run, MANIFEST))
    if manifest is None:
        raise DataError(f"{run}: no {MANIFEST}; the run was not (completely) published")
    fs, path = filesystem(run)
    for rel, meta in manifest["files"].items():
        try:
            data = fs.cat_file(join(path, rel))
        except FileNotFoundError:
            raise DataError(f"{run}/{rel}: listed in the manifest but missing") from None
        if hashlib.sha256(data).hexdigest() != meta["sha256"] or len(data) != meta["bytes"]:
            raise DataError(f"{run}/{rel}: does not match the manifest (corrupt or tampered)")
    return manifest


def champion_uri(store: str, dataset: str, family: str) -> str:
    return join(normalize(store), "champions", dataset, f"{family}.json")


def update_champion(store: str, dataset: str, family: str, entry: dict, margin: float) -> dict:
    """Move the pointer to `entry` only if it beats the champion's test accuracy by more than
    `margin`; former champions stay listed (and their run folders stay) for rollback."""
    uri = champion_uri(store, dataset, family)
    current = read_json(uri)
    old_acc = None if current is None else current["test_acc"]
    if current is not None and current["run_id"] == entry["run_id"]:
        return {"moved": False, "reason": "already the champion", "champion": current}
    if old_acc is not None and not entry["test_acc"] > old_acc + margin:
        return {"moved": False, "champion": current,
                "reason": f"{entry['test_acc']:.4f} does not beat {old_acc:.4f} + {margin}"}
    history = [] if current is None else [
        *current.get("previous", []), {k: v for k, v in current.items() if k != "previous"}]
    new = {**entry, "since": time.time(), "previous": history}
    write_json(uri, new)
    return {"moved": True, "champion": new, "reason": "first champion" if current is None else
            f"{entry['test_acc']:.4f} beats {old_acc:.4f} + {margin}"}


def rollback_champion(store: str, dataset: str, family: str) -> dict:
    """Point back at the previous champion (its run folder was never removed)."""
    uri = champion_uri(store, dataset, family)
    current = read_json(uri)
    if not current or not current.get("previous"):
        raise DataError(f"{dataset}/{family}: no previous champion to roll back to")
    *older, last = current["previous"]
    verify_run(last["run_uri"])
    write_json(uri, {**last, "since": time.time(), "previous": older})
    return last
