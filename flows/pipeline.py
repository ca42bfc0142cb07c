"""The pipeline DAG: prepare every dataset → tune every (dataset, family) → train the final
models with the best config → evaluate → publish → the model comparison.
Run: `imgclf pipeline [--profile smoke|default|full] [--store URL]`, or from the Prefect UI."""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Optional

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from cluster.connect import connect
from flows.branches import (
    branch_task,
    budget_lines,
    outcome,
    plan_final,
    prepare_all,
    slots,
    study_branches,
    tune_all,
)
from flows.compare import compare_task, table_rows
from flows.config import PipelineConfig
from flows.pipeline_plan import run_id
from flows.profiles import ProfileName, resolve_sources
from flows.profiles import build as build_profile
from flows.progress import step
from flows.publish import champion_markdown, champions_task, publish_task
from flows.records import BranchRecord
from flows.retrain import retrain_decision
from flows.tracked import log_comparison, with_pipeline_run
from flows.tune import trials_artifact_of
from lightning_modules import layout
from lightning_modules.errors import UserError
from lightning_modules.store import join, read_json
from lightning_modules.store_check import check_store


def apply_storage_block(name: Optional[str]) -> None:
    """Credentials from a Prefect Secret block holding a JSON object of environment variables
    (AWS_ACCESS_KEY_ID, ...): set for this process and the Ray it starts, never logged."""
    if not name:
        return
    from prefect.blocks.system import Secret

    value = Secret.load(name).get()
    env = json.loads(value) if isinstance(value, str) else value
    if not isinstance(env, dict):
        raise ValueError(f"Secret block {name!r} must hold a JSON object of variables")
    os.environ.update({str(k): str(v) for k, v in env.items()})


@flow(name="pipeline", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=64))
def pipeline(cfg: PipelineConfig = PipelineConfig(), store: str = "",
             storage_block: str = "") -> str:
    """The whole study as one DAG. Returns the run folder's URI (its manifest lists the files).

    Args:
        cfg: the whole typed config (datasets, families, tuning budget, training, scaling);
            its defaults are the default profile's, what `make run` runs.
        store: where data, models and runs go (path or s3://); overrides the config's store
            (empty: the config's).
        storage_block: name of a Prefect Secret block holding the store's credentials as a
            JSON object of environment variables (AWS_ACCESS_KEY_ID, ...); empty: none.
    """
    return run_pipeline(resolve_sources(cfg), store, storage_block)


@flow(name="pipeline-profile", log_prints=True,
      task_runner=ThreadPoolTaskRunner(max_workers=64))
def pipeline_profile(profile: ProfileName = "default", store: str = "",
                     storage_block: str = "") -> str:
    """The pipeline on a named profile (`imgclf pipeline --profile P`).

    Args:
        profile: smoke (minutes), default (MNIST, Fashion-MNIST and CIFAR-10, all four
            families, `make run`), cifar (CIFAR-10 with airbench94's net) or full (three
            seeds, larger search, the study).
        store: where data, models and runs go (path or s3://); overrides the profile's store
            (empty: the profile's).
        storage_block: name of a Prefect Secret block holding the store's credentials as a
            JSON object of environment variables (AWS_ACCESS_KEY_ID, ...); empty: none.
    """
    return run_pipeline(build_profile(profile), store, storage_block)


def run_pipeline(cfg: PipelineConfig, store: str, storage_block: str) -> str:
    """The pipeline's body, in the calling flow's run."""
    log = get_run_logger()
    started = time.monotonic()
    apply_storage_block(storage_block)
    if store:
        cfg = cfg.model_copy(update={"store": store})
    check_store(cfg.store)
    data, failed = prepare_all(cfg)
    if not data:  # nothing to tune or train: no run to publish
        raise UserError("every dataset failed to prepare: " + "; ".join(
            f"{n}: {e}" for n, e in failed.items()))
    keys = {n: (read_json(join(u, layout.MANIFEST)) or {}).get("key", "") for n, u in data.items()}
    rid = run_id(cfg, keys)
    run = layout.run_uri(cfg.store, rid)
    decision = retrain_decision(cfg.store, rid, run, keys)
    if decision.status == "unchanged":
        return run
    cfg, tracked = with_pipeline_run(cfg, rid)
    kept = {r.key: r for r in decision.kept}
    branches = [(ds, fam) for ds in data for fam in cfg.families if f"{ds}/{fam}" not in kept]
    connect(cfg.scaling.ray_address)  # one Ray connection for every branch of the run
    width = slots(cfg, branches)
    tuned = tune_all.with_options(task_runner=ThreadPoolTaskRunner(max_workers=width))(
        cfg, branches) if branches else []
    # Copies: a subflow's result passed to a task is recorded as a flow_run task input, which
    # Prefect's UI cannot list (an empty Task Runs tab).
    tuned = [r.model_copy() for r in tuned]
    for r in tuned:  # the trials tables on the pipeline's run too, where users look first
        if r.tune_uri:
            trials_artifact_of(r.tune_uri)
    left = (cfg.run_time_budget_s or 0) - (time.monotonic() - started) - cfg.finish_seconds
    epochs, plan_note = plan_final(cfg, tuned, data, left)
    step(log, "%d branches submitted: %s", len(epochs),
         ", ".join(f"{k} ({n} epochs)" for k, n in epochs.items()))
    final = cfg  # the final trainings end at the plan's deadline, even when slower than planned
    if cfg.run_time_budget_s is not None:
        final = cfg.model_copy(update={"scaling": cfg.scaling.model_copy(
            update={"deadline": time.time() + max(0.0, left)})})
    futures = [None if r.error else branch_task.submit(final, r, epochs[r.key]) for r in tuned]
    records: list[BranchRecord] = []
    for before, fut in zip(tuned, futures):
        rec = before
        if fut is not None:
            fut.wait()
            rec, err = outcome(fut.state)
            rec = rec or before.model_copy(update={"error": err})
        if rec.error:
            step(log, "%s failed: %s", rec.key, rec.error)
        records.append(rec)
    done = {r.key: r for r in [*decision.kept, *records]}
    records = [done[f"{ds}/{fam}"] for ds in data for fam in cfg.families
               if f"{ds}/{fam}" in done]
    if all(r.error for r in records):  # no model to publish: the next trigger tries again
        raise UserError("every branch failed: " + "; ".join(f"{r.key}: {r.error}"
                                                             for r in records))
    studies = study_branches(cfg, records)  # its findings are an artifact of the study's own
    notes = budget_lines(cfg, records, plan_note, time.monotonic() - started) + \
        list(dict.fromkeys(r.budget_note for r in records if r.budget_note)) + \
        [f"dataset {n} failed: {e}" for n, e in failed.items()]
    comparison = compare_task(rid, records, list(cfg.families), failed, studies, notes)
    published = publish_task(run, rid, records, comparison, studies, failed, keys)
    moves = champions_task(cfg.store, cfg.champion_margin, run, rid, comparison, cfg.tracking)
    log_comparison(cfg, tracked, comparison, published["markdown"])
    create_table_artifact(key="model-comparison", table=table_rows(comparison),
                          description=f"model comparison of run {rid}")
    create_markdown_artifact(key="model-comparison-report", markdown=published["markdown"],
                             description=f"run {rid}: {run}")
    step(log, "published %d files to %s; champions moved: %s", published["files"], run,
         ", ".join(k for k, v in moves.items() if v["moved"]) or "none")
    create_markdown_artifact(key="champion-gate", markdown=champion_markdown(moves),
                             description=f"champion decisions of run {rid}")
    return run


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(pipeline())
