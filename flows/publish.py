"""Stage: publishing. A run folder of models, metrics, plots and repro capsules, its manifest
(written last; readers trust only what it lists), `runs/latest.json`, and the champion
pointers with their gate."""
from __future__ import annotations

import hashlib
import time
from typing import Any, Optional

from prefect import task

from flows.compare import cells_of, write_comparison
from flows.plots import curves_png
from flows.pointers import read_pointer
from flows.records import BranchRecord, Files, chosen_seed, seed_summary
from flows.repro import capsule
from flows.retry import transient_only
from lightning_modules import layout
from lightning_modules import metrics as M
from lightning_modules.bundle import INFO, WEIGHTS, verified_weights
from lightning_modules.errors import DataError
from lightning_modules.store import (
    filesystem,
    join,
    read_bytes,
    read_json,
    remove_quietly,
    write_bytes,
    write_json,
)
from lightning_modules.tracking import TrackingConfig, mirror_champion

MANIFEST = layout.MANIFEST
BUNDLE_FILES = (WEIGHTS, INFO, layout.METRICS, "confusion.json", "confusion.png",
                "test_predictions.npy")
run_uri = layout.run_uri


def publish_branch(run: str, record: BranchRecord | dict) -> Files:
    """Copy the chosen bundle and its evaluation into `<run>/<dataset>/<family>/`, with training
    curves, the tuning result, per-seed results and the repro capsule."""
    rec = BranchRecord.model_validate(record)
    rel = rec.key
    infos = [read_json(join(b, INFO)) for b in rec.bundles]
    metrics = [read_json(u) for u in rec.metrics_uris]
    pick = chosen_seed(infos)
    # Never publish (and vouch for) tampered weights: the bytes copied are the bytes checked.
    _, weights = verified_weights(rec.bundles[pick])
    src_fs, src = filesystem(rec.bundles[pick])
    files: Files = {}
    for name in BUNDLE_FILES:
        data = weights if name == WEIGHTS else src_fs.cat_file(join(src, name))
        files[f"{rel}/{name}"] = write_bytes(join(run, rel, name), data)
    tune_best = read_json(rec.tune_uri) if rec.tune_uri else None
    tuning = None if tune_best is None or rec.tune_uri is None else {
        "best": tune_best,
        "trials": read_json(join(rec.tune_uri.rsplit("/", 1)[0], layout.TRIALS)),
        "requested_trials": rec.trials_requested, "budget_note": rec.budget_note}
    extra = {"tuning.json": tuning, "seeds.json": {"chosen_seed_index": pick,
                                                   **seed_summary(metrics)},
             "repro.json": capsule(infos, tune_best)}
    for name, obj in extra.items():
        files[f"{rel}/{name}"] = write_json(join(run, rel, name), obj)
    title = f"{rec.dataset} / {rec.family}"
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
        write_json(layout.latest(run.rsplit("/", 1)[0]), {"run_id": run_id, "uri": run})
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


champion_uri = layout.champion_uri

def update_champion(store: str, dataset: str, family: str, entry: dict, margin: float) -> dict:
    """Move the pointer to `entry` only if it beats the champion's test accuracy by more than
    `margin`; former champions stay listed (and their run folders stay) for rollback."""
    uri = champion_uri(store, dataset, family)
    current = read_pointer(uri, {"run_id", M.TEST_ACC})
    old_acc = None if current is None else current[M.TEST_ACC]
    if current is not None and current["run_id"] == entry["run_id"]:
        return {"moved": False, "reason": "already the champion", "champion": current}
    if old_acc is not None and not entry[M.TEST_ACC] > old_acc + margin:
        return {"moved": False, "champion": current,
                "reason": f"{entry[M.TEST_ACC]:.4f} does not beat {old_acc:.4f} + {margin}"}
    history = [] if current is None else [
        *current.get("previous", []), {k: v for k, v in current.items() if k != "previous"}]
    new = {**entry, "since": time.time(), "previous": history}
    write_json(uri, new)
    return {"moved": True, "champion": new, "reason": "first champion" if current is None else
            f"{entry[M.TEST_ACC]:.4f} beats {old_acc:.4f} + {margin}"}


def previous_champion(store: str, dataset: str, family: str) -> list[dict]:
    """The champions before the current one, oldest first; none is a DataError."""
    current = read_json(champion_uri(store, dataset, family))
    if not current or not current.get("previous"):
        raise DataError(f"{dataset}/{family}: no previous champion to roll back to")
    return current["previous"]


def rollback_champion(store: str, dataset: str, family: str,
                      tracking: Optional[TrackingConfig] = None) -> dict:
    """Point back at the previous champion (its run folder was never removed), and the
    `champion` alias of its registered model when tracked."""
    uri = champion_uri(store, dataset, family)
    *older, last = previous_champion(store, dataset, family)
    verify_run(last["run_uri"])
    write_json(uri, {**last, "since": time.time(), "previous": older})
    if tracking is not None:
        mirror_champion(tracking, dataset, family, last["uri"])
    return last


@task(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=transient_only,
      task_run_name="publish run {rid}")
def publish_task(run: str, rid: str, records: list[BranchRecord], comparison: dict,
                 study_pngs: dict[str, str], failed: dict[str, str],
                 data_keys: Optional[dict[str, str]] = None) -> dict:
    """Every branch's files, the comparison, the branch records, then the manifest (last). A
    retry rewrites the same files; a publish that never finishes leaves no manifest, so nothing
    is listed. The manifest names the failed branches: a later trigger redoes them."""
    files: Files = {}
    recs = [BranchRecord.model_validate(r) for r in records]
    for rec in recs:
        if not rec.error:
            files.update(publish_branch(run, rec))
    pngs = {n: read_bytes(u) for n, u in study_pngs.items()}
    more, md_text = write_comparison(run, comparison, pngs)
    files.update(more)
    files[layout.RECORDS] = write_json(join(run, layout.RECORDS),
                                       [r.model_dump(mode="json") for r in recs])
    write_manifest(run, rid, files, {
        "failed_datasets": failed, "data_keys": data_keys or {},
        "failed_branches": {r.key: r.error for r in recs if r.error}})
    return {"files": len(files), "markdown": md_text}


def champion_entry(rid: str, run: str, ds: str, fam: str, test_acc: float) -> dict[str, Any]:
    return {"run_id": rid, "run_uri": run, "uri": join(run, ds, fam), M.TEST_ACC: test_acc,
            "dataset": ds, "family": fam}


@task(task_run_name="champion gate")
def champions_task(store: str, margin: float, run: str, rid: str, comparison: dict,
                   tracking: Optional[TrackingConfig] = None) -> dict:
    """Move each (dataset, family) champion pointer if this run's model beats it (and the
    `champion` alias of its registered model, when tracked); then gate.json in the run folder
    says the run is complete."""
    moves = {f"{ds}/{fam}": update_champion(store, ds, fam,
                                            champion_entry(rid, run, ds, fam, c.test_acc or 0.0),
                                            margin)
             for ds, fam, c in cells_of(comparison) if c.status == "ok"}
    for key, move in moves.items():
        if tracking is not None and move["moved"]:
            ds, fam = key.split("/")
            mirror_champion(tracking, ds, fam, move["champion"]["uri"])
    write_json(join(run, layout.GATE), {"run_id": rid, "applied_at": time.time(),
                                        "moves": moves})
    return moves


def champion_markdown(moves: dict[str, dict]) -> str:
    rows = [f"| {k} | {'moved' if v['moved'] else 'kept'} | {v['reason']} |"
            for k, v in sorted(moves.items())]
    return "\n".join(["# Champion gate", "", "| model | champion | why |", "|---|---|---|",
                      *rows])
