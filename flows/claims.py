"""The original study's claims beside what a study over datasets and families measured,
confirmed or not. Every verdict comes from paired tests over the same seeds and data; the best
point of a dataset is chosen on validation accuracy, its test accuracy is what is reported."""
from __future__ import annotations

from typing import Any, Iterable

from flows.findings import ALPHA, DEPTH_PAIRS
from flows.study_stats import paired_t

Studied = dict[tuple[str, str], dict[str, Any]]  # (dataset, family) -> a study's results

# The original study's published best CIFAR-10 accuracy (its deepest network).
ORIGINAL_CIFAR10_ACC = 0.79


def depth_held(studied: Studied, dataset: str) -> tuple[int, int]:
    """(comparisons where the deeper family is significantly better, comparisons made)."""
    held = total = 0
    for a, b in DEPTH_PAIRS:
        ra, rb = studied.get((dataset, a)), studied.get((dataset, b))
        if ra is None or rb is None or len(ra["base"]["accs"]) != len(rb["base"]["accs"]):
            continue
        test = paired_t(ra["base"]["accs"], rb["base"]["accs"])
        total += 1
        held += test.p is not None and test.p < ALPHA and test.diff > 0
    return held, total


def lever_effects(studied: Studied, lever: str) -> tuple[int, int, float]:
    """(studies where the lever's best value on validation differs significantly from the base
    on test, studies of that lever, largest spread of mean test accuracy over its values)."""
    hits = total = 0
    spread = 0.0
    for results in studied.values():
        pts = results.get(lever)
        if not pts:
            continue
        best = max(pts, key=lambda p: p["val_mean"])
        test = paired_t(results["base"]["accs"], best["accs"])
        total += 1
        hits += test.p is not None and test.p < ALPHA
        means = [p["mean"] for p in pts]
        spread = max(spread, max(means) - min(means))
    return hits, total, spread


def best_on_validation(studied: Studied, dataset: str) -> tuple[str, str, str, float] | None:
    """(family, lever, value, mean test accuracy) of the dataset's point with the best mean
    validation accuracy, over every family and lever studied on it."""
    cands = [(r["base"]["val_mean"], fam, "base", "", r["base"]["mean"])
             for (ds, fam), r in studied.items() if ds == dataset]
    cands += [(p["val_mean"], fam, lever, str(p["value"]), p["mean"])
              for (ds, fam), r in studied.items() if ds == dataset
              for lever, pts in r.items() if lever != "base" for p in pts]
    if not cands:
        return None
    _, fam, lever, value, acc = max(cands)
    return fam, lever, value, acc


def _verdict(held: int, total: int) -> str:
    if total == 0:
        return "not tested"
    if held == total:
        return "confirmed"
    return "partly confirmed" if held else "not supported by these data"


def claims_table(studied: Studied, levers: Iterable[str]) -> str:
    """A markdown table: claim, where, what was measured, verdict."""
    datasets = sorted({ds for ds, _ in studied})
    rows = []
    for ds in datasets:
        held, total = depth_held(studied, ds)
        rows.append(("Classification improves with the deepening of the network model", ds,
                     f"deeper significantly better in {held} of {total} paired comparisons",
                     _verdict(held, total)))
    for lever in levers:
        hits, total, spread = lever_effects(studied, lever)
        rows.append((f"The {lever.replace('_', ' ')} changes the classification accuracy",
                     "all", f"best value (on validation) significantly different from the base "
                     f"in {hits} of {total} studies; largest spread over values {spread:.4f}",
                     _verdict(hits, total)))
    for ds in datasets:
        if "cifar" not in ds:
            continue
        best = best_on_validation(studied, ds)
        if best is None:
            continue
        fam, lever, value, acc = best
        where = f"{fam} base" if lever == "base" else f"{fam}, {lever} = {value}"
        rows.append((f"CIFAR-10 reaches {ORIGINAL_CIFAR10_ACC:.2f} test accuracy", ds,
                     f"{acc:.4f} ({where}, the best point on validation)",
                     "confirmed" if acc >= ORIGINAL_CIFAR10_ACC else "not reached at this budget"))
    lines = ["## The original study's claims, measured", "",
             "| claim | dataset | measured | verdict |", "|---|---|---|---|"]
    lines += [f"| {c} | {d} | {m} | {v} |" for c, d, m, v in rows]
    return "\n".join(lines) + "\n"
