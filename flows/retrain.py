"""Whether a pipeline trigger has work to do. The run id hashes the config and every dataset's
content key; a run folder with that id is complete when its manifest lists no failed branch and
its champion gate ran (gate.json). A complete run stands; an incomplete one is finished: its
published branches are kept and only the failed ones run again, then the gate is applied."""
from __future__ import annotations

from typing import Literal

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel

from flows.progress import step
from flows.pointers import latest_run
from flows.publish import verify_run
from flows.records import BranchRecord
from lightning_modules import layout
from lightning_modules.errors import DataError
from lightning_modules.store import join, read_json


class Decision(BaseModel):
    status: Literal["unchanged", "changed", "incomplete"]
    message: str
    kept: list[BranchRecord] = []  # an incomplete run's published branches, reused as they are


def retrain_decision(store: str, rid: str, run: str, keys: dict[str, str]) -> Decision:
    """Decide, and say so (a log line and the `retrain-decision` markdown artifact)."""
    decision = _decide(store, rid, run, keys)
    step(get_run_logger(), decision.message)
    create_markdown_artifact(key="retrain-decision",
                             markdown=f"# Retraining\n\n{decision.message}",
                             description=f"retraining: {decision.status}")
    return decision


def _decide(store: str, rid: str, run: str, keys: dict[str, str]) -> Decision:
    manifest = read_json(join(run, layout.MANIFEST))
    if manifest is None:
        return Decision(status="changed", message=_why_train(store, rid, keys))
    failed = manifest.get("failed_branches", {})
    gate = read_json(join(run, layout.GATE))
    if not failed and gate is not None:
        return Decision(status="unchanged", message=(
            f"Nothing changed: every source gives the same data ({_keys_text(keys)}) and the "
            f"config is the same, so run {rid} stands as published at {run}; no training."))
    try:
        verify_run(run)
        records = [BranchRecord.model_validate(r)
                   for r in read_json(join(run, layout.RECORDS)) or []]
    except (DataError, ValueError) as e:
        return Decision(status="changed", message=(
            f"Run {rid} is incomplete and its files cannot be trusted ({e}): training it again."))
    kept = [r for r in records if not r.error]
    missing = [f"{k} failed ({e})" for k, e in sorted(failed.items())]
    if gate is None:
        missing.append("the champion gate never ran")
    return Decision(status="incomplete", kept=kept, message=(
        f"Run {rid} is incomplete: {'; '.join(missing)}. Finishing it: "
        f"{len(kept)} published branch(es) kept, the rest run again, then the champion gate."))


def _why_train(store: str, rid: str, keys: dict[str, str]) -> str:
    """What differs from the latest published run: the datasets whose keys changed, or else
    the config."""
    latest = latest_run(store)
    if latest is None:
        return f"No earlier run in {store}: training run {rid}."
    before = (read_json(join(latest["uri"], layout.MANIFEST)) or {}).get("data_keys", {})
    changed = sorted(n for n in keys if before.get(n) != keys[n])
    if not changed:
        return f"Same data as run {latest['run_id']} but a different config: training run {rid}."
    return (f"Data changed since run {latest['run_id']}: "
            + ", ".join(f"{n} {before.get(n) or '(new)'} → {keys[n]}" for n in changed)
            + f"; retraining as run {rid}, then the champion gate decides.")


def _keys_text(keys: dict[str, str]) -> str:
    return ", ".join(f"{n} {k}" for n, k in sorted(keys.items()))
