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
from flows.publish import champion_markdown, champions_task, publish_task
from flows.records import BranchRecord
from lightning_modules import metrics as M
from lightning_modules import tracking
from lightning_modules.bundle import INFO
from lightning_modules.layout import run_uri
from lightning_modules.store import join, read_json


def model_run_id(training_run: str) -> str:
    """The published run's id: readable when it fits the 64 characters ids may have."""
    rid = f"model-{training_run}"
    return rid if len(rid) <= 64 else f"model-{hashlib.sha256(rid.encode()).hexdigest()[:16]}"


@task(task_run_name="find the model")
def find_model(cfg: PublishConfig) -> str:
    return bundle_uri(cfg)


@flow(name="publish-model")
def publish_model(cfg: PublishConfig = PublishConfig()) -> dict[str, Any]:
    """Publish the latest (or named) trained model of a (dataset, family) so the page shows it:
    evaluated (or its evaluation reused), published as a run, the champion gate applied.

    Args:
        cfg: which model (dataset, family, training run; default the latest), the store, and the
            margin it must beat the champion by.
    """
    t = tracking.from_env(cfg.tracking)
    bundle = find_model(cfg)
    metrics_uri = evaluate_task(bundle, reuse=True, tracking=t)
    info = read_json(join(bundle, INFO))
    ds, fam = info["dataset"], info["family"]
    rid = model_run_id(info["run_name"])
    run = run_uri(cfg.store, rid)
    rec = BranchRecord(dataset=ds, family=fam, bundles=[bundle], metrics_uris=[metrics_uri])
    comparison = build_comparison(rid, [rec], [fam], {}, {}, [])
    publish_task(run, rid, [rec], comparison, {}, {})
    gate = champions_task(cfg.store, cfg.champion_margin, run, rid, comparison, t)[f"{ds}/{fam}"]
    out = {"run": run, "model": f"{ds}/{fam}@{rid}", M.TEST_ACC: read_json(metrics_uri)[M.TEST_ACC],
           "champion": {"moved": gate["moved"], "reason": gate["reason"]}}
    create_markdown_artifact(key="champion-gate", description=f"published {out['model']}",
                             markdown=champion_markdown({out["model"]: out["champion"]}))
    return out
