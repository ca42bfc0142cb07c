"""Publish one trained model: `imgclf publish` or the flow `publish-model`. The model (evaluated
first if it was not) becomes a run of its own, `runs/model-<training run>`, with its manifest,
comparison and champion gate, so `imgclf serve` lists and serves it like the pipeline's models."""
from __future__ import annotations

import hashlib
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from flows.compare import build as build_comparison
from flows.config import PublishConfig
from flows.evaluate import bundle_uri, evaluate_task
from flows.publish import champion_entry, champion_markdown, publish_task, update_champion
from flows.records import BranchRecord
from lightning_modules import metrics as M
from lightning_modules.bundle import INFO
from lightning_modules.layout import run_uri
from lightning_modules.store import join, read_json


def model_run_id(training_run: str) -> str:
    """The published run's id: readable when it fits the 64 characters ids may have."""
    rid = f"model-{training_run}"
    return rid if len(rid) <= 64 else f"model-{hashlib.sha256(rid.encode()).hexdigest()[:16]}"


@task(task_run_name="publish model")
def publish_model_task(cfg: PublishConfig) -> dict[str, Any]:
    """Evaluate (or reuse the evaluation of) the bundle, publish it as a run, move the champion
    pointer if it beats the champion by the margin."""
    bundle = bundle_uri(cfg)
    metrics_uri = evaluate_task.fn(bundle, reuse=True)
    info = read_json(join(bundle, INFO))
    ds, fam = info["dataset"], info["family"]
    rid = model_run_id(info["run_name"])
    run = run_uri(cfg.store, rid)
    rec = BranchRecord(dataset=ds, family=fam, bundles=[bundle], metrics_uris=[metrics_uri])
    comparison = build_comparison(rid, [rec], [fam], {}, {}, [])
    publish_task.fn(run, rid, [rec], comparison, {}, {})
    acc = read_json(metrics_uri)[M.TEST_ACC]
    gate = update_champion(cfg.store, ds, fam, champion_entry(rid, run, ds, fam, acc),
                           cfg.champion_margin)
    return {"run": run, "model": f"{ds}/{fam}@{rid}", M.TEST_ACC: acc,
            "champion": {"moved": gate["moved"], "reason": gate["reason"]}}


@flow(name="publish-model")
def publish_model(cfg: PublishConfig = PublishConfig()) -> dict[str, Any]:
    """Publish the latest (or named) trained model of a (dataset, family) so the page shows it.

    Args:
        cfg: which model (dataset, family, training run; default the latest), the store, and the
            margin it must beat the champion by.
    """
    out = publish_model_task(cfg)
    create_markdown_artifact(key="champion-gate", description=f"published {out['model']}",
                             markdown=champion_markdown({out["model"]: out["champion"]}))
    return out
