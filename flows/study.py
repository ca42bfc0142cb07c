"""Stage: the lever study, one lever at a time as in the original study. Run: `imgclf study
--dataset mnist --model cnn --levers dropout`. Every point is a training and an evaluation
task (cached by inputs). All points are submitted at once: each training is a Ray task holding
its resources, so the cluster's free CPUs (not this flow) decide how many train side by side.
The findings (flows/findings.py) say, per lever, which value did best on validation and whether
its test accuracy differs from the base's more than the seeds' spread."""
from __future__ import annotations

import re
import statistics
import time
from typing import Any, Optional

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from cluster.config import TrainConfig, apply_levers
from flows.config import StudyConfig
from flows.evaluate import evaluate_task
from flows.claims import claims_table
from flows.findings import depth_findings, lever_findings
from flows.plots import dataset_panels, lever_panels
from flows.progress import step
from flows.study_budget import Budget, distinct_points, fit_to_budget, relative_costs
from flows.tracked import log_findings, with_study_run
from flows.train import train_task
from lightning_modules import layout
from lightning_modules import metrics as M
from lightning_modules.bundle import INFO
from lightning_modules.nets import FAMILIES
from lightning_modules.store import join, read_json, write_bytes, write_json

BASE = "base"  # the base config's own point, trained with every seed, in every study
# Learning rates are swept around each family's own (SGD at 0.375 and Adam at 0.002 share no
# useful absolute grid); factor 1 is the base's own point.
LR_FACTORS = (0.1, 0.3, 1.0, 3.0, 10.0)


def grid(cfg: StudyConfig, lever: str) -> list[Any]:
    if lever == "structure":
        return cfg.plan.structure_grid or FAMILIES[cfg.base.model.family].cpu_presets()
    if lever == "lr" and cfg.plan.lr_grid is None:
        lr = cfg.base.optim.lr
        return [lr if f == 1 else float(f"{lr * f:.4g}") for f in LR_FACTORS]
    return list(getattr(cfg.plan, f"{lever}_grid"))


def point_config(base: TrainConfig, lever: str, value: Any, seed: int) -> TrainConfig:
    """The base config with one lever set to value (the others stay at the base)."""
    return apply_levers(base, {lever: value}, seed=seed)


def summarize(accs: list[float], val_accs: list[float]) -> dict[str, Any]:
    return {"accs": accs, "mean": statistics.fmean(accs),
            "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "val_accs": val_accs, "val_mean": statistics.fmean(val_accs)}


def expand(cfg: StudyConfig) -> list[StudyConfig]:
    """The (dataset, family) studies a config asks for: its base alone, or each dataset ×
    family from the family's recipe on the base's data size, epochs, seed and scaling."""
    from flows.pipeline_plan import recipe_train

    base = cfg.base.model_copy(update={"max_eval_samples": cfg.plan.eval_samples})
    if cfg.datasets is None and cfg.families is None:
        return [cfg.model_copy(update={"base": base})]
    return [StudyConfig(base=recipe_train(base, ds, fam), plan=cfg.plan)
            for ds in cfg.datasets or [cfg.base.dataset]
            for fam in cfg.families or [cfg.base.model.family]]


Key = tuple[int, str, str, int]  # (study, lever, value, seed)


def points(cfg: StudyConfig, i: int = 0) -> dict[Key, TrainConfig]:
    """Every (lever, value, seed) of the study, plus the base's own point per seed."""
    seeds = [cfg.base.seed + s for s in range(cfg.plan.seeds)]
    out = {(i, BASE, BASE, s): cfg.base.model_copy(update={"seed": s}) for s in seeds}
    for lever in cfg.plan.levers:
        for value in grid(cfg, lever):
            out.update({(i, lever, repr(value), s): point_config(cfg.base, lever, value, s)
                        for s in seeds})
    return out


def planned(subs: list[StudyConfig], budget_s: float, started: float
            ) -> tuple[Budget, dict[Key, float]]:
    """The budget's sizes for subs, and each point's planned seconds."""
    rel = {i: relative_costs(sub, points(sub, i)) for i, sub in enumerate(subs)}
    budget = fit_to_budget(subs, budget_s, started, {
        i: distinct_points(points(sub, i), rel[i]) for i, sub in enumerate(subs)})
    return budget, {k: budget.point_s[i] * r for i in rel for k, r in rel[i].items()}


def submit_all(cfgs: dict[Key, TrainConfig], seconds: Optional[dict[Key, float]] = None
               ) -> dict[Key, PrefectFuture]:
    """A training and an evaluation per distinct config (the base's value of a lever is the
    base's point: trained once), all submitted now, the longest planned first (seconds) so
    that no long point starts last while the other places stand idle."""
    by_config: dict[str, PrefectFuture] = {}
    out = {}
    ordered = sorted(cfgs.items(), key=lambda kv: -(seconds or {}).get(kv[0], 0.0))
    for key, c in ordered:
        ident = layout.cache_key(c)
        if ident not in by_config:
            name = f"{c.dataset}/{c.model.family} {key[1]}={key[2]} seed {c.seed}"
            bundle = train_task.with_options(task_run_name=f"study train {name}").submit(c)
            by_config[ident] = evaluate_task.with_options(
                task_run_name=f"study evaluate {name}").submit(bundle, reuse=True, light=True)
        out[key] = by_config[ident]
    return out


def point_scores(metrics_uri: str) -> tuple[float, float]:
    """(test accuracy, best validation accuracy) of one evaluated point."""
    metrics = read_json(metrics_uri) or {}
    info = read_json(join(metrics["bundle"], INFO)) or {}
    return float(metrics[M.TEST_ACC]), float(info.get("metrics", {}).get(M.SCORE, 0.0))


@task(task_run_name="write study {cfg.base.dataset}/{cfg.base.model.family}")
def write_study(cfg: StudyConfig, results: dict[str, Any], findings: str) -> str:
    """study.json, study.png (a panel per lever, mean ± std over seeds) and findings.md;
    returns the study's URI."""
    uri = layout.study_uri(cfg.base.store, cfg.base.dataset, cfg.base.model.family,
                           layout.cache_key(cfg))
    title = f"{cfg.base.dataset} / {cfg.base.model.family}: one lever at a time " \
            f"({cfg.plan.seeds} seed(s), {cfg.base.epochs} epoch(s))"
    levers = {k: v for k, v in results.items() if k != BASE}
    write_bytes(join(uri, "study.png"), lever_panels(levers, title, results[BASE]["mean"]))
    write_bytes(join(uri, "findings.md"), findings.encode())
    write_json(join(uri, "study.json"), {"config": cfg.model_dump(mode="json"),
                                         "results": results})
    return uri


@flow(name="study", task_runner=ThreadPoolTaskRunner(max_workers=64))
def study(cfg: StudyConfig = StudyConfig()) -> str:
    """The original study's one-lever-at-a-time sweeps, with plots and findings: of the base,
    or of every dataset × family asked for (all points of all of them submitted at once, and
    the depth claim tested across families). Returns the study's (or the set's) URI.

    Args:
        cfg: the base training (dataset, family, sizes, scaling), the levers and their
            grids, the seeds, the datasets and families to study, and the time budget.
    """
    from cluster.connect import connect

    started = time.monotonic()
    connect(cfg.base.scaling.ray_address)  # here, not in a task's thread (Ray's signal handlers)
    cfg, tracked = with_study_run(cfg)
    subs = expand(cfg)
    notes, order, account = [""] * len(subs), {}, ""
    if cfg.budget_s is not None:
        budget, order = planned(subs, cfg.budget_s, started)
        subs, notes = budget.subs, budget.notes
    cfgs = {k: v for i, sub in enumerate(subs) for k, v in points(sub, i).items()}
    futures = submit_all(cfgs, order)
    distinct = list({id(f): f for f in futures.values()}.values())
    step(get_run_logger(), "study: %d trainings submitted (%d study(ies))", len(distinct),
         len(subs))
    for n, _ in enumerate(as_completed(distinct), 1):
        if n % max(1, len(distinct) // 10) == 0 or n == len(distinct):
            step(get_run_logger(), "study: %d of %d points trained and evaluated", n,
                 len(distinct))
    scores = {key: point_scores(f.result()) for key, f in futures.items()}
    if cfg.budget_s is not None:
        account = budget_account(cfg.budget_s, budget.planned_s, time.monotonic() - started)
        step(get_run_logger(), "study: %s", account)
        notes = [f"{n}. {account}" for n in notes]
    uris, studied = [], {}
    for i, sub in enumerate(subs):
        results = study_results(sub, i, scores)
        findings = lever_findings(sub, results)
        if notes[i]:
            findings += f"\nBudget: {notes[i]}\n"
        create_markdown_artifact(key=_artifact_key("findings", sub.base.dataset,
                                                   sub.base.model.family),
                                 markdown=findings, description="study findings of "
                                 f"{sub.base.dataset}/{sub.base.model.family}")
        uris.append(write_study(sub, results, findings))
        studied[(sub.base.dataset, sub.base.model.family)] = results
    uri = uris[0] if len(subs) == 1 else write_set(cfg, studied, account)
    log_findings(cfg, tracked, uri)
    return uri


def budget_account(budget_s: float, planned_s: float, taken_s: float) -> str:
    """The budget against the plan and what the study took, as the findings report it."""
    return (f"the whole study took {taken_s:,.0f} s of its {budget_s:,.0f} s budget "
            f"(planned {planned_s:,.0f} s)")


def study_results(cfg: StudyConfig, i: int, scores: dict[Key, tuple[float, float]]
                  ) -> dict[str, Any]:
    seeds = [cfg.base.seed + s for s in range(cfg.plan.seeds)]

    def column(lever: str, value: str) -> dict[str, Any]:
        pairs = [scores[(i, lever, value, s)] for s in seeds]
        return summarize([t for t, _ in pairs], [v for _, v in pairs])
    results: dict[str, Any] = {BASE: column(BASE, BASE)}
    for lever in cfg.plan.levers:
        results[lever] = [{"value": v, **column(lever, repr(v))} for v in grid(cfg, lever)]
    return results


@task(task_run_name="write the study's findings")
def write_set(cfg: StudyConfig, studied: dict[tuple[str, str], dict[str, Any]],
              account: str = "") -> str:
    """A study over datasets and families: study.json shaped {"results": {dataset: {family:
    {lever: points}}}}, and findings.md testing the depth claim (also an artifact)."""
    uri = layout.study_uri(cfg.base.store, "_all", "_all", layout.cache_key(cfg))
    nested: dict[str, dict[str, Any]] = {}
    for (ds, fam), results in studied.items():
        nested.setdefault(ds, {})[fam] = results
    depth = depth_findings(studied) + "\n" + claims_table(studied, cfg.plan.levers)
    if account:
        depth += f"\nBudget: {account}.\n"
    create_markdown_artifact(key="study-depth", markdown=depth,
                             description="the original study's claims, tested")
    write_bytes(join(uri, "findings.md"), depth.encode())
    for ds, by_family in nested.items():
        levers = {fam: {k: v for k, v in r.items() if k != BASE} for fam, r in by_family.items()}
        write_bytes(join(uri, f"study-{ds}.png"), dataset_panels(
            levers, f"{ds}: one lever at a time, per family ({cfg.plan.seeds} seed(s); "
            "dashed: the family's recipe)", {f: r[BASE]["mean"] for f, r in by_family.items()}))
    write_json(join(uri, "study.json"), {"config": cfg.model_dump(mode="json"),
                                         "results": nested})
    return uri


def _artifact_key(*parts: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower())[:100]


if __name__ == "__main__":
    print(study(StudyConfig()))
