"""A study's records, as study.json keeps them: the depth models (with their validation curves
and whether they count as trained), the nine depth tests, and per lever its race, its
confirmation and its verdict. p-values are adjusted by Holm's method within each family of
comparisons (the depth tests; the lever tests). Test accuracy is read only here, after every
choice was made on validation."""
from __future__ import annotations

import statistics
from typing import Any, Optional

from cluster.config import TrainConfig
from flows.config import StudyConfig
from flows.study_plan import Plan
from flows.study_points import seeds
from flows.study_run import Point
from flows.study_stats import holm, paired_t, verdict
from lightning_modules import metrics as M
from lightning_modules.bundle import INFO
from lightning_modules.errors import reason
from lightning_modules.nets import FAMILIES
from lightning_modules.store import join, read_json

DEPTH_PAIRS = (("bp", "dnn"), ("cnn", "dcnn"), ("bp", "dcnn"))
GAIN_CONVERGED = 0.005  # half a point of validation accuracy


def trained(curves: list[list[float]], planned: int, family_epochs: int) -> tuple[bool, str]:
    """The stated rule, over a depth model's seeds: it counts as trained when every seed ran
    its planned epochs and either reached its family's own epochs or the seeds' last epoch
    gained, on average, less than half a point of validation accuracy (one seed's swing is
    seed noise, not the model's state)."""
    runs = min((len(c) for c in curves), default=0)
    if runs < planned:
        return False, f"stopped at the deadline after {runs} of {planned} epoch(s)"
    if planned >= family_epochs:
        return True, f"reached the family's {family_epochs} epoch(s)"
    if planned < 2:
        return False, f"one of the family's {family_epochs} epochs: no sign of convergence"
    gain = statistics.fmean(c[-1] - c[-2] for c in curves)
    if gain < GAIN_CONVERGED:
        return True, f"last epoch gained {gain:+.4f} validation accuracy (mean over seeds)"
    return False, (f"still gaining {gain:+.4f} validation accuracy (mean over seeds) at epoch "
                   f"{planned} of the family's {family_epochs}")


def _result(fut: Any) -> Optional[str]:
    try:
        return fut.result()
    except Exception:  # a failed training or evaluation: _failure says why
        return None


def _failure(p: Point) -> str:
    for fut in (p.train, p.evaluate):
        try:
            if fut is not None:
                fut.result()
        except Exception as e:
            return reason(e)
    return ""


def point_info(p: Point) -> dict[str, Any]:
    uri = _result(p.train)
    return (read_json(join(uri, INFO)) or {}) if uri else {}


def point_val(p: Point) -> Optional[float]:
    """The best epoch's validation accuracy (the checkpoint kept), None if it failed."""
    score = point_info(p).get("metrics", {}).get(M.SCORE)
    return float(score) if score is not None else None


def point_test_acc(p: Point) -> Optional[float]:
    uri = _result(p.evaluate) if p.evaluate is not None else None
    acc = (read_json(uri) or {}).get(M.TEST_ACC) if uri else None
    return float(acc) if acc is not None else None


def depth_row(key: str, base: TrainConfig, plan: Plan, points: list[Point],
              n: dict[str, int]) -> dict[str, Any]:
    ds, fam = key.split("/", 1)
    row: dict[str, Any] = {"dataset": ds, "family": fam, "seeds": [], "test_acc": [],
                           "val_acc": [], "n_test": n["test"], "train_images": n["train"],
                           "epochs": plan.epochs[key], "epochs_run": [], "val_curve": [],
                           "trained": False, "reason": ""}
    if not points:
        row["reason"] = next((x.split(": ", 1)[1].split("; ")[0] for x in plan.notes
                              if x.startswith(f"{key}: not trained")), "not trained")
        return row
    for p in points:
        info, acc = point_info(p), point_test_acc(p)
        if acc is None:
            row["reason"] = f"a training failed: {_failure(p) or 'no result'}"
            return row
        curve = [float(h[M.VAL_ACC]) for h in info.get("history", []) if M.VAL_ACC in h]
        row["seeds"].append(p.cfg.seed)
        row["test_acc"].append(acc)
        row["val_acc"].append(float(info.get("metrics", {}).get(M.SCORE, 0.0)))
        row["epochs_run"].append(len(curve))
        row["val_curve"].append(curve)
    row["trained"], row["reason"] = trained(row["val_curve"], plan.epochs[key],
                                            FAMILIES[fam].epochs)
    return row


def depth_tests(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each deeper family against the shallower one on each dataset, over the same seeds and
    test images; judged only when both count as trained."""
    by = {(r["dataset"], r["family"]): r for r in rows}
    out = []
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        for a, b in DEPTH_PAIRS:
            ra, rb = by.get((ds, a)), by.get((ds, b))
            if ra is None or rb is None:
                continue
            t = {"dataset": ds, "shallower": a, "deeper": b, "diff": None, "p": None,
                 "p_adjusted": None, "verdict": "not tested", "reason": ""}
            untrained = [r for r in (ra, rb) if not r["trained"]]
            if untrained:
                t["reason"] = "; ".join(f"{r['family']} not trained: {r['reason']}"
                                        for r in untrained)
            elif ra["seeds"] != rb["seeds"]:
                t["reason"] = "the two families' seeds differ"
            else:
                test = paired_t(ra["test_acc"], rb["test_acc"])
                t.update(diff=test.diff, p=test.p, reason=test.reason, _test=test)
            out.append(t)
    return _adjusted(out)


def _adjusted(tests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Holm over the family; verdicts from the adjusted p-values."""
    for t, padj in zip(tests, holm([t["p"] for t in tests])):
        t["p_adjusted"] = padj
        test = t.pop("_test", None)
        if test is not None:
            t["verdict"] = verdict(test, padj)
    return tests


def lever_row(key: str, lever: str, state: dict[str, Any], values: list, base: TrainConfig,
              plan: Plan, cfg: StudyConfig) -> dict[str, Any]:
    from cluster.config import lever_value

    ds, fam = key.split("/", 1)
    race, confirm = state["race"], state.get("confirm")
    size = state.get("confirm_size")
    row: dict[str, Any] = {
        "dataset": ds, "family": fam, "lever": lever, "values": values,
        "recipe": lever_value(base, lever), "race": race.record_json() if race else [],
        "chosen": race.winner() if race else None, "confirm_seeds": seeds(cfg),
        "confirm_images": size.images if size else None,
        "confirm_epochs": size.epochs if size else None,
        "chosen_test_acc": [], "recipe_test_acc": [], "diff": None, "p": None,
        "p_adjusted": None, "verdict": "not tested", "reason": state["reason"],
        "note": state.get("note", "")}
    if confirm is None or state["reason"]:
        return row
    chosen, recipe = confirm["chosen"], confirm["recipe"]
    if any(a is None for a in chosen + recipe):
        row["reason"] = "a confirmation training failed"
        return row
    test = paired_t(recipe, chosen)
    row.update(chosen_test_acc=chosen, recipe_test_acc=recipe, diff=test.diff, p=test.p,
               _test=test, reason=test.reason or (
                   "the race kept the recipe's value" if row["chosen"] == row["recipe"] else ""))
    return row


def judge_levers(levers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return _adjusted(levers)


def mean_std(xs: list[float]) -> str:
    if not xs:
        return "–"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.fmean(xs):.4f} ± {sd:.4f}"
