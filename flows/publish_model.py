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
from flows.pipeline import champion_markdown, publish_stage
from flows.publish import run_uri, update_champion
from flows.store import join, read_json
from lightning_modules import metrics as M
from lightning_modules.bundle import INFO


def model_run_id(training_run: str) -> str:
    """The published run's id: readable when it fits the 64 characters ids may have."""
    rid = f"model-{training_run}"
    return rid if len(rid) <= 64 else f"model-{hashlib.sha256(rid.encode()).hexdigest()[:16]}"


@task
def publish_model_task(cfg: PublishConfig) -> dict[str, Any]:
    """Evaluate (or reuse the evaluation of) the bundle, publish it as a run, move the champion
    pointer if it beats the champion by the margin."""
    bundle = bundle_uri(cfg)
    metrics_uri = evaluate_task.fn(bundle, reuse=True)
    info = read_json(join(bundle, INFO))
    ds, fam = info["dataset"], info["family"]
    rid = model_run_id(info["run_name"])
    run = run_uri(cfg.store, rid)
    rec = {"dataset": ds, "family": fam, "bundles": [bundle], "metrics_uris": [metrics_uri],
           "error": None}
    comparison = build_comparison(rid, [rec], [fam], {}, {}, [])
    publish_stage.fn(run, rid, [rec], comparison, {}, {})
    acc = read_json(metrics_uri)[M.TEST_ACC]
    gate = update_champion(cfg.store, ds, fam, {"run_id": rid, "run_uri": run,
                                                "uri": join(run, ds, fam), "test_acc": acc,
                                                "dataset": ds, "family": fam},
                           cfg.champion_margin)
    return {"run": run, "model": f"{ds}/{fam}@{rid}", "test_acc": acc,
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
