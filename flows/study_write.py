"""A study's outputs: study.json (for tools), findings.md (also a Prefect artifact) and a
depth and a lever figure per dataset, in one folder of the store."""
from __future__ import annotations

from typing import Any

from prefect.artifacts import create_markdown_artifact

from flows.claims import claims
from flows.config import StudyConfig
from flows.findings import findings
from flows.plots import depth_png, levers_png
from flows.study_plan import Plan
from flows.study_points import batch_rule_note
from flows.study_results import depth_tests, judge_levers
from flows.study_run import Runner
from lightning_modules import layout
from lightning_modules.nets import FAMILIES
from lightning_modules.store import join, write_bytes, write_json


def study_uri(cfg: StudyConfig) -> str:
    """One (dataset, family): study/<ds>/<family>/<key>; several: study/_all/_all/<key>."""
    b = cfg.base
    one = cfg.datasets is None and cfg.families is None
    return layout.study_uri(b.store, b.dataset if one else "_all",
                            b.model.family if one else "_all", layout.cache_key(cfg))


def recipes(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {f: {"levers": dict(FAMILIES[f].recipe), "optim": dict(FAMILIES[f].optim),
                "epochs": FAMILIES[f].epochs} for f in dict.fromkeys(r["family"] for r in rows)}


def budget_lines(cfg: StudyConfig, plan: Plan, wall_s: float, runner: Runner) -> list[str]:
    taken = f"the study took {wall_s:,.0f} s" + (
        f" of its {cfg.budget_s:,.0f} s budget" if cfg.budget_s else "")
    parts = [f"{part}: {plan.seconds.get(part, 0):,.0f} machine-seconds planned, "
             f"{runner.taken(part):,.0f} taken" for part in ("depth", "race", "confirm")]
    return [taken, *parts, *plan.notes]


def write_study(cfg: StudyConfig, plan: Plan, rows: list[dict[str, Any]],
                levers: list[dict[str, Any]], wall_s: float, runner: Runner) -> str:
    uri = study_uri(cfg)
    tests = depth_tests(rows)
    levers = judge_levers(levers)
    table = claims(rows, tests, levers)
    budget = budget_lines(cfg, plan, wall_s, runner)
    title = (f"Study findings: {', '.join(dict.fromkeys(r['dataset'] for r in rows))} × "
             f"{', '.join(dict.fromkeys(r['family'] for r in rows))}, {cfg.plan.seeds} seed(s)")
    text = findings(title, budget, rows, tests, levers, table, batch_rule_note(cfg.plan))
    create_markdown_artifact(key="study-findings", markdown=text,
                             description="the original study's claims, judged")
    write_bytes(join(uri, "findings.md"), text.encode())
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == ds]
        sizes = ", ".join(f"{r['family']} {r['train_images']:,}×{r['epochs']}" for r in mine)
        write_bytes(join(uri, f"depth-{ds}.png"), depth_png(
            mine, f"{ds}: each family's recipe, {cfg.plan.seeds} seed(s) ({sizes} images × "
            "epochs)"))
        races = [r for r in levers if r["dataset"] == ds and r["race"]]
        if races:
            top = max((g for r in races for g in r["race"]), key=lambda g: g["images"] * g["epochs"])
            write_bytes(join(uri, f"levers-{ds}.png"), levers_png(
                races, f"{ds}: each lever's race on validation (rungs up to {top['images']:,} "
                f"images × {top['epochs']} epoch(s); star: the recipe, bold: the winner)"))
    write_json(join(uri, "study.json"), {
        "budget_s": cfg.budget_s, "wall_s": round(wall_s, 1),
        "plan": {"seconds": plan.seconds, "machine_s": plan.machine_s, "notes": plan.notes,
                 "depth_epochs": plan.epochs,
                 "confirm": {k: _size(v) for k, v in plan.confirm.items()},
                 "race_top": {k: _size(v) for k, v in plan.race_top.items()}},
        "config": cfg.model_dump(mode="json"), "recipes": recipes(rows),
        "depth": rows, "depth_tests": tests, "levers": levers, "claims": table})
    return uri


def _size(s: Any) -> Any:
    return None if s is None else {"images": s.images, "epochs": s.epochs}
