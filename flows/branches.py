"""The pipeline's stages over branches: prepare every dataset, tune every (dataset, family),
plan the final trainings' epochs, train and evaluate each branch, and say how the time went.
flows/pipeline.py composes them."""
from __future__ import annotations

from typing import Any, Optional

from prefect import flow, get_run_logger, task
from prefect.states import State

from flows.config import PipelineConfig
from flows.evaluate import evaluate_task
from flows.pipeline_plan import (
    base_train,
    branch_cost,
    final_config,
    plan_epochs,
    plan_images,
    plan_trials,
    study_config,
    tune_config,
)
from flows.prepare_data import prepare_task, publish_card
from flows.progress import step
from flows.records import BranchRecord
from flows.study import study
from flows.train import train_task
from flows.tune import tune_task
from lightning_modules import layout
from lightning_modules import metrics as M
from lightning_modules.bundle import INFO
from lightning_modules.datamodule import augments
from lightning_modules.errors import reason
from lightning_modules.store import join, read_json
from lightning_modules.tta import PASSES as TTA_PASSES


def outcome(state: State) -> tuple[Any, Optional[str]]:
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
        uri, err = outcome(fut.state)
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
        tuned, err = outcome(fut.state)
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
    costs, n_trains = {}, {}
    for r in live:
        manifest = read_json(join(data[r.dataset], layout.MANIFEST)) or {}
        splits = manifest["splits"]
        n_train = n_trains[r.key] = min(splits["train"]["count"],
                                        cfg.max_train_samples or 1 << 62)
        ips = r.img_per_s or 100.0  # unmeasured (a tuning from before speeds were kept): slow
        costs[r.key] = branch_cost(ips, n_train, splits["val"]["count"], cfg.seeds,
                                   cfg.overhead_seconds, splits["test"]["count"],
                                   TTA_PASSES if augments(manifest["shape"]) else 1)
    width = slots(cfg, [(r.dataset, r.family) for r in live])
    epochs, note = plan_epochs(costs, seconds_left, width, cfg.max_final_epochs)
    images, shrunk = plan_images(costs, seconds_left, width, n_trains)
    for r in live:
        c = costs[r.key]
        r.epochs, r.train_images = epochs[r.key], images[r.key]
        share = (images[r.key] or n_trains[r.key]) / n_trains[r.key]
        steps = (c.epoch_s - c.val_s) * share + c.val_s
        r.planned_seconds = round(steps * epochs[r.key] * c.runs, 1)  # steps, as "taken"
    if shrunk:
        total = sum(r.planned_seconds + costs[r.key].fixed_s * costs[r.key].runs for r in live)
        note = (f"budget: {seconds_left:.0f} s left for the final trainings × {width} at once; "
                f"planned {total / width:.0f} s of it; {shrunk}")
        if total / width > seconds_left + 1e-6:
            note += " (over: even the smallest subsets do not fit what is left)"
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
        tcfg = final_config(cfg, rec.tuned_train_config, ds, fam, cfg.seed + s, epochs,
                            rec.train_images)
        bundle, err = outcome(train_task.with_options(task_run_name=f"train {ds}/{fam} seed "
                                                       f"{tcfg.seed}")(tcfg, return_state=True))
        if err:
            return rec.model_copy(update={"error": f"training: {err}"})
        metrics, err = outcome(evaluate_task.with_options(
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
        subset = f" on {r.train_images:,} images" if r.train_images else ""
        lines.append(f"{r.key}: {r.trials} trial(s) in {r.tune_seconds or 0:.0f} s, {speed} → "
                     f"{r.epochs} epoch(s){subset} ({planned}{r.train_seconds or 0:.0f} s taken "
                     "in training steps)")
    return lines


def study_branches(cfg: PipelineConfig, records: list[BranchRecord]) -> dict[str, str]:
    """`--study`: one study over every trained dataset and family, after the branches, as
    `imgclf study --datasets --families` runs it; returns its figures for the report."""
    ok = [r for r in records if not r.error]
    if not cfg.study or not ok:
        return {}
    datasets = list(dict.fromkeys(r.dataset for r in ok))
    families = list(dict.fromkeys(r.family for r in ok))
    sweep = study_config(cfg, datasets[0], families[0]).model_copy(
        update={"datasets": datasets, "families": families, "budget_s": cfg.study_budget_s})
    uri, err = outcome(study(sweep, return_state=True))
    if not uri:
        step(get_run_logger(), "the study failed: %s", err)
        return {}
    data = read_json(join(uri, "study.json")) or {}
    raced = {r["dataset"] for r in data.get("levers", []) if r["race"]}
    names = [f"depth-{ds}.png" for ds in datasets] + [f"levers-{ds}.png" for ds in datasets
                                                      if ds in raced]
    return {f"study-{n}": join(uri, n) for n in names}
