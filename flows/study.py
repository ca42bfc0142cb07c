"""Stage: the original study, answered with trained models. Run: `imgclf study --datasets
mnist,fashion-mnist,cifar10 --families bp,dnn,cnn,dcnn --seeds 3 --budget-s 3600`.

Three parts, planned together from measured speeds (flows/study_plan.py):
- depth: every family's recipe on all its training images, several seeds, tested on the whole
  test split; deeper against shallower, paired over seeds, judged only on trained models;
- race: each lever's values by successive halving on validation accuracy (flows/study_race.py);
- confirmation: the race's winner and the recipe, on seeds the race never used, at one size
  for both, tested on the whole test split.
Verdicts come from paired t-tests with Holm's adjustment (flows/study_stats.py)."""
from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from cluster.config import lever_value
from flows.config import StudyConfig
from flows.progress import step
from flows.study_budget import budget_plan, configured_plan, counts, FINISH_S
from flows.study_plan import Plan
from flows.study_points import grid, lever_config, race_seed, seeds, sized, subjects
from flows.study_race import Race, Size
from flows.study_results import depth_row, lever_row, point_test_acc, point_val
from flows.study_run import Point, Runner, drive
from flows.study_write import write_study
from flows.tracked import log_findings, with_study_run


@flow(name="study", task_runner=ThreadPoolTaskRunner(max_workers=64))
def study(cfg: StudyConfig = StudyConfig()) -> str:
    """The original study's questions, answered on trained models: does a deeper network
    classify better, and does optimising each of the five levers raise accuracy? Returns the
    URI of the study's folder (study.json, findings.md, figures).

    Args:
        cfg: the base training (dataset, family, sizes, scaling), the levers and their grids,
            the seeds, the datasets and families to study, and the time budget.
    """
    from cluster.connect import connect

    started, wall_started = time.monotonic(), time.time()
    connect(cfg.base.scaling.ray_address)  # here, not in a task's thread (Ray's signal handlers)
    cfg, tracked = with_study_run(cfg)
    subs = subjects(cfg)
    grids = {k: {lv: grid(b, cfg.plan, lv) for lv in cfg.plan.levers} for k, b in subs.items()}
    lever_cfgs = {k: {lv: [lever_config(b, cfg.plan, lv, v) for v in vs]
                      for lv, vs in grids[k].items()} for k, b in subs.items()}
    plan = configured_plan(subs, cfg) if cfg.budget_s is None else \
        budget_plan(subs, lever_cfgs, cfg, started)
    end = None if cfg.budget_s is None else wall_started + cfg.budget_s - FINISH_S
    runner, log = Runner(end, plan.slots), get_run_logger()
    depth: dict[str, list[Point]] = {}
    races: dict[tuple[str, str], dict[str, Any]] = {}

    def say(msg: str) -> None:
        step(log, "study: %s", msg)
    groups = []
    for k, b in sorted(subs.items(), key=lambda kv: -plan.estimate(
            kv[0], Size(counts(kv[1])["train"], max(1, plan.epochs[kv[0]])), True)):
        if plan.epochs[k]:  # the longest first: no long training starts last
            size = Size(counts(b)["train"], plan.epochs[k])
            depth[k] = [runner.submit(sized(b, size, size.images, s), f"{k} depth seed {s}",
                                      test=True, part="depth",
                                      estimate_s=plan.estimate(k, size, True))
                        for s in seeds(cfg)]
            groups.append((depth[k], lambda g: []))
    say(f"{sum(len(v) for v in depth.values())} depth trainings submitted")
    for k, b in subs.items():
        for lv, values in grids[k].items():
            state = {"race": None, "confirm": None, "reason": "", "note": ""}
            races[(k, lv)] = state
            sizes = plan.rungs(k, len(values), cfg.plan.eta)
            if sizes is None:
                state["reason"] = "no budget left for its race and confirmation"
                continue
            state["race"] = Race(values, lever_value(b, lv), sizes, cfg.plan.eta)
            groups.append(_rung(cfg, plan, runner, k, lv, lever_cfgs[k][lv], state, b, 0))
    drive(groups, say, runner)
    say("every training done; writing the findings")
    rows = [depth_row(k, subs[k], plan, depth.get(k, []), counts(subs[k]))
            for k in subs]
    levers = [lever_row(k, lv, state, grids[k][lv], subs[k], plan, cfg)
              for (k, lv), state in races.items()]
    uri = write_study(cfg, plan, rows, levers, time.monotonic() - started, runner)
    log_findings(cfg, tracked, uri)
    return uri


def _rung(cfg: StudyConfig, plan: Plan, runner: Runner, key: str, lever: str, cfgs: list,
          state: dict, base: Any, rung: int) -> tuple[list[Point], Any]:
    """Submit one rung of a race; its callback records it and submits what comes next."""
    race: Race = state["race"]
    size, n = race.sizes[rung], counts(base)["train"]
    entrants = race.entrants(rung)
    pts = [runner.submit(sized(cfgs[i], size, n, race_seed(cfg), cfg.plan.eval_samples),
                         f"{key} {lever}={race.values[i]!r} rung {rung}", test=False,
                         part="race", estimate_s=plan.estimate(key, size, False,
                                                               cfg.plan.eval_samples))
           for i in entrants]

    def then(done: list[Point]) -> list[tuple[list[Point], Any]]:
        for i, p in zip(entrants, done):
            val = point_val(p)
            if val is None:
                state["reason"] = f"a race point failed at rung {rung}"
                return []
            race.record(rung, i, val)
        return _advance(cfg, plan, runner, key, lever, cfgs, state, base)
    return pts, then


def _advance(cfg: StudyConfig, plan: Plan, runner: Runner, key: str, lever: str, cfgs: list,
             state: dict, base: Any) -> list[tuple[list[Point], Any]]:
    """After a rung: the next rung when it and the confirmation still fit the budget, else
    the confirmation of the best so far; work that fits only once the queue ahead of it has
    drained waits for it (asked again at every poll); work that can no longer fit is not
    run, and the findings say so."""
    race: Race = state["race"]
    size = plan.confirm[key]
    confirm_s = 2 * cfg.plan.seeds * plan.estimate(key, size, True) if size else 0.0
    nxt = race.next_rung()
    if nxt is not None:
        rung_s = len(race.entrants(nxt)) * plan.estimate(key, race.sizes[nxt], False,
                                                         cfg.plan.eval_samples)
        if runner.fits(rung_s + confirm_s):
            return [_rung(cfg, plan, runner, key, lever, cfgs, state, base, nxt)]
        if runner.ever_fits(rung_s + confirm_s):
            return [([], lambda _: _advance(cfg, plan, runner, key, lever, cfgs, state, base))]
        state["note"] = f"the budget cut the race after rung {nxt - 1}"
    if size is None or not runner.ever_fits(confirm_s):
        state["reason"] = "the budget ended before its confirmation"
        return []
    if not runner.fits(confirm_s):
        return [([], lambda _: _confirm_when_room(cfg, plan, runner, key, lever, cfgs, state,
                                                  base, confirm_s))]
    return [_confirm(cfg, plan, runner, key, lever, cfgs, state, base)]


def _confirm_when_room(cfg: StudyConfig, plan: Plan, runner: Runner, key: str, lever: str,
                       cfgs: list, state: dict, base: Any, confirm_s: float) -> list:
    if runner.fits(confirm_s):
        return [_confirm(cfg, plan, runner, key, lever, cfgs, state, base)]
    if runner.ever_fits(confirm_s):
        return [([], lambda _: _confirm_when_room(cfg, plan, runner, key, lever, cfgs, state,
                                                  base, confirm_s))]
    state["reason"] = "the budget ended before its confirmation"
    return []


def _confirm(cfg: StudyConfig, plan: Plan, runner: Runner, key: str, lever: str, cfgs: list,
             state: dict, base: Any) -> tuple[list[Point], Any]:
    """The race's winner and the recipe on the confirmation seeds, at one size for both."""
    race: Race = state["race"]
    size, n = plan.confirm[key], counts(base)["train"]
    assert size is not None
    win = race.values.index(race.winner())
    rec = race.values.index(race.recipe)
    arms = {"chosen": cfgs[win], "recipe": cfgs[rec]}
    pts = {arm: [runner.submit(sized(c, size, n, s), f"{key} {lever}={race.values[i]!r} "
                               f"confirm seed {s}", test=True, part="confirm",
                               estimate_s=plan.estimate(key, size, True)) for s in seeds(cfg)]
           for (arm, c), i in zip(arms.items(), (win, rec))}

    def then(done: list[Point]) -> list:
        state["confirm"] = {arm: [point_test_acc(p) for p in ps] for arm, ps in pts.items()}
        state["confirm_size"] = size
        return []
    return [*pts["chosen"], *pts["recipe"]], then
