"""The pipeline DAG: prepare every dataset → tune every (dataset, family) → train the final
models with the best config → evaluate → publish → the model comparison.
Run: `imgclf pipeline [--profile smoke|default|full] [--store URL]`, or from the Prefect UI."""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Optional

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner

from cluster.connect import connect
from flows.claims import claims_table
from flows.compare import compare_task, table_rows
from flows.config import PipelineConfig, ProfileName
from flows.evaluate import evaluate_task
from flows.findings import depth_findings
from flows.pipeline_plan import (
    base_train,
    branch_cost,
    final_config,
    plan_epochs,
    plan_trials,
    run_id,
    study_config,
    tune_config,
)
from flows.prepare_data import prepare_task, publish_card
from flows.profiles import build as build_profile
from flows.profiles import resolve_sources
from flows.progress import step
from flows.publish import champion_markdown, champions_task, publish_task
from flows.records import BranchRecord
from flows.retrain import retrain_decision
from flows.study import study
from flows.train import train_task
from flows.tracked import log_comparison, with_pipeline_run
from flows.tune import trials_artifact_of, tune_task
from lightning_modules import layout
from lightning_modules import metrics as M
from lightning_modules.bundle import INFO
from lightning_modules.datamodule import augments
from lightning_modules.errors import UserError, reason
from lightning_modules.store import check_store, join, read_json
from lightning_modules.tta import PASSES as TTA_PASSES


def _outcome(state: State) -> tuple[Any, Optional[str]]:
    """(result, None) for a completed task, (None, the reason) for a failed one."""
    if state.is_completed():
        return state.result(), None
    err = state.result(raise_on_failure=False)
    return None, reason(err) if isinstance(err, BaseException) else str(err)


def prepare_all(cfg: PipelineConfig) -> tuple[dict[str, str], dict[str, str]]:
    """Prepare every dataset at once (prep is I/O and decoding, not Ray); a failed one is
    reported and the others go on."""
    futures = {}
    for spec in cfg.datasets:
        prep = spec.prep(cfg.store, cfg.seed)
        futures[prep.resolved_name()] = prepare_task.with_options(
            task_run_name=f"prepare {prep.resolved_name()}").submit(prep)
    ok, failed = {}, {}
    for name, fut in futures.items():
        fut.wait()
        uri, err = _outcome(fut.state)
        if err:
            failed[name] = err
            step(get_run_logger(), "prepare %s failed: %s", name, err)
        else:
            step(get_run_logger(), "prepared %s: %s", name, uri)
            ok[name] = uri
            publish_card(uri, name)
    return ok, failed


@flow(name="tune-all", log_prints=True)
def tune_all(cfg: PipelineConfig, branches: list[tuple[str, str]]) -> list[BranchRecord]:
    """Every branch's tuning, as many at once as the task runner allows (the pipeline gives
    it the cluster's width: a tuning waiting for a place would snapshot its experiment ten
    times a second, slowing the trials it waits for and their speed measurements); a failed
    tuning ends its branch only."""
    log = get_run_logger()
    trials, note = plan_trials(cfg, len(branches))
    step(log, "tuning %d branches (%d trial(s) each)", len(branches), trials)
    futures = [tune_task.submit(tune_config(cfg, ds, fam, trials)) for ds, fam in branches]
    records = []
    for (ds, fam), fut in zip(branches, futures):
        fut.wait()
        rec = BranchRecord(dataset=ds, family=fam, trials_requested=cfg.tune.num_samples,
                           budget_note=note)
        tuned, err = _outcome(fut.state)
        if err:
            step(log, "%s/%s: tuning failed: %s", ds, fam, err)
            records.append(rec.model_copy(update={"error": f"tuning: {err}"}))
            continue
        b = tuned.best
        records.append(rec.model_copy(update={
            "tune_uri": tuned.best_uri, "tune_cached": tuned.cached, "trials": b.trials,
            "tune_seconds": b.wall_seconds, "img_per_s": b.img_per_s, "startup_s": b.startup_s,
            "tuned_train_config": b.train_config}))
    return records


def plan_final(cfg: PipelineConfig, records: list[BranchRecord], data: dict[str, str],
               seconds_left: float) -> tuple[dict[str, int], Optional[str]]:
    """Epochs of each branch's final training: the config's, or planned so that the final
    trainings fit what is left of the run's budget, from each tuning winner's measured speed."""
    live = [r for r in records if not r.error]
    if cfg.epochs is not None or cfg.run_time_budget_s is None:
        return {r.key: cfg.epochs or cfg.max_final_epochs for r in live}, None
    costs = {}
    for r in live:
        manifest = read_json(join(data[r.dataset], layout.MANIFEST)) or {}
        splits = manifest["splits"]
        n_train = min(splits["train"]["count"], cfg.max_train_samples or 1 << 62)
        ips = r.img_per_s or 100.0  # unmeasured (a tuning from before speeds were kept): slow
        costs[r.key] = branch_cost(ips, n_train, splits["val"]["count"], cfg.seeds,
                                   cfg.overhead_seconds, splits["test"]["count"],
                                   TTA_PASSES if augments(manifest["shape"]) else 1)
    width = slots(cfg, [(r.dataset, r.family) for r in live])
    epochs, note = plan_epochs(costs, seconds_left, width, cfg.max_final_epochs)
    for r in live:
        c = costs[r.key]
        r.epochs = epochs[r.key]
        r.planned_seconds = round(c.epoch_s * epochs[r.key] * c.runs, 1)  # steps, as "taken"
    return epochs, note


def slots(cfg: PipelineConfig, branches: list[tuple[str, str]]) -> int:
    """How many of the branches' runs the Ray cluster holds at once (the widest need wins)."""
    from cluster.launcher import parallel_slots

    return min((parallel_slots(base_train(cfg, ds, fam, cfg.seed, None)) for ds, fam in branches),
               default=1)


@task(task_run_name="branch {rec.dataset}/{rec.family}")
def branch_task(cfg: PipelineConfig, rec: BranchRecord, epochs: int) -> BranchRecord:
    """Train (one model per seed, the tuned levers, the planned epochs) and evaluate one
    (dataset, family). Every branch is submitted at once: the Ray cluster's free resources
    decide how many train side by side."""
    log = get_run_logger()
    ds, fam = rec.dataset, rec.family
    rec = rec.model_copy(update={"epochs": epochs, "train_seconds": 0.0})
    for s in range(cfg.seeds):
        tcfg = final_config(cfg, rec.tuned_train_config, ds, fam, cfg.seed + s, epochs)
        bundle, err = _outcome(train_task.with_options(task_run_name=f"train {ds}/{fam} seed "
                                                       f"{tcfg.seed}")(tcfg, return_state=True))
        if err:
            return rec.model_copy(update={"error": f"training: {err}"})
        metrics, err = _outcome(evaluate_task.with_options(
            task_run_name=f"evaluate {ds}/{fam} seed {tcfg.seed}")(
                bundle, reuse=True, tracking=tcfg.tracking, return_state=True))
        if err:
            return rec.model_copy(update={"error": f"evaluation: {err}"})
        info = read_json(join(bundle, INFO)) or {}
        rec.train_seconds = round((rec.train_seconds or 0) + info.get("train_seconds", 0), 1)
        acc = (read_json(metrics) or {}).get(M.TEST_ACC)
        step(log, "%s/%s: seed %d trained (%d epochs) and evaluated: test accuracy %s", ds, fam,
             tcfg.seed, epochs, f"{acc:.4f}" if isinstance(acc, float) else acc)
        rec.bundles.append(bundle)
        rec.metrics_uris.append(metrics)
    return rec


def budget_lines(cfg: PipelineConfig, records: list[BranchRecord], plan_note: Optional[str],
                 wall_s: float) -> list[str]:
    """How the run's time went, for the report: the plan, then per branch its tuning, its
    measured speed, the epochs it was given and the seconds planned and taken."""
    budget = f" of a {cfg.run_time_budget_s:.0f} s budget" if cfg.run_time_budget_s else ""
    lines = [f"time: {wall_s:.0f} s until publishing{budget}"] + ([plan_note] if plan_note
                                                                    else [])
    for r in records:
        if r.error or r.epochs is None:
            continue
        speed = f"{r.img_per_s:,.0f} img/s" if r.img_per_s else "speed not measured"
        planned = f"{r.planned_seconds:.0f} s planned, " if r.planned_seconds else ""
        lines.append(f"{r.key}: {r.trials} trial(s) in {r.tune_seconds or 0:.0f} s, {speed} → "
                     f"{r.epochs} epoch(s) ({planned}{r.train_seconds or 0:.0f} s taken in "
                     "training steps)")
    return lines


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
def pipeline(cfg: Optional[PipelineConfig] = None, profile: ProfileName = "default",
             store: Optional[str] = None, storage_block: Optional[str] = None) -> str:
    """The whole study as one DAG. Returns the run folder's URI (its manifest lists the files).

    Args:
        cfg: the whole typed config (datasets, families, tuning budget, training, scaling);
            when given it wins over `profile`; empty: the profile's config is used.
        profile: smoke (minutes), default (MNIST, Fashion-MNIST and CIFAR-10, all four
            families, `make run`), cifar (CIFAR-10 with airbench94's net) or full (three
            seeds, larger search, the study).
        store: where data, models and runs go (path or s3://); overrides the config's store.
        storage_block: name of a Prefect Secret block holding the store's credentials as a
            JSON object of environment variables (AWS_ACCESS_KEY_ID, ...).
    """
    log = get_run_logger()
    started = time.monotonic()
    apply_storage_block(storage_block)
    cfg = resolve_sources(cfg) if cfg is not None else build_profile(profile)
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
    studies: dict[str, str] = {}
    for before, fut in zip(tuned, futures):
        rec = before
        if fut is not None:
            fut.wait()
            rec, err = _outcome(fut.state)
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
    studied: dict[tuple[str, str], dict] = {}
    for rec in records:  # the study sweeps its own grid after the branches (`--study`)
        ds, fam = rec.dataset, rec.family
        if cfg.study and not rec.error:
            uri, err = _outcome(study(study_config(cfg, ds, fam), return_state=True))
            if uri:
                studies[f"study_{ds}_{fam}.png"] = join(uri, "study.png")
                studied[(ds, fam)] = (read_json(join(uri, "study.json")) or {})["results"]
    if studied:
        create_markdown_artifact(key="study-depth", markdown=depth_findings(studied) + "\n" +
                                 claims_table(studied, cfg.study_plan.levers),
                                 description="the original study's claims, tested")
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
