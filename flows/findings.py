"""What a study found, in words and numbers: per lever, the value that did best on validation
(never chosen on test), its test accuracy against the base's over the same seeds (a paired
t-test), and a verdict that says when a difference is within the seeds' spread."""
from __future__ import annotations

from typing import Any

from cluster.config import lever_value
from flows.config import StudyConfig
from flows.study_stats import Paired, paired_t

ALPHA = 0.05


def verdict(r: Paired) -> str:
    if r.p is None:
        return "no test (one seed, or identical results)"
    if r.p >= ALPHA:
        return f"within the seeds' spread (p = {r.p:.3f})"
    return f"{'better' if r.diff > 0 else 'worse'} than the base (p = {r.p:.3f})"


def lever_rows(cfg: StudyConfig, results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per lever: best value on validation, its effect on test against the base."""
    base = results["base"]
    rows = []
    for lever, pts in results.items():
        if lever == "base":
            continue
        best = max(pts, key=lambda p: p["val_mean"])
        test = paired_t(base["accs"], best["accs"])
        worst = min(p["mean"] for p in pts)
        rows.append({"lever": lever, "base value": lever_value(cfg.base, lever),
                     "best value": best["value"], "best test acc": best["mean"],
                     "effect": test.diff, "range": best["mean"] - worst, "p": test.p,
                     "verdict": verdict(test)})
    return rows


def lever_findings(cfg: StudyConfig, results: dict[str, Any]) -> str:
    """findings.md of one (dataset, family) study."""
    b, base = cfg.base, results["base"]
    n = len(base["accs"])
    lines = [f"# Study findings: {b.dataset} / {b.model.family}", "",
             f"{n} seed(s) per point, {b.epochs} epoch(s), "
             f"{b.max_train_samples or 'all'} training images, validated and tested on "
             f"{_sample(b.max_eval_samples)}. The base (the config every lever "
             f"is varied from) scored {base['mean']:.4f} ± {base['std']:.4f} test accuracy.",
             "The best value of a lever is the one with the best mean validation accuracy; its "
             "effect is its mean test accuracy minus the base's, over the same seeds and data "
             f"(paired t-test, two-sided, α = {ALPHA}).", "",
             "| lever | base value | best value | its test acc | effect | spread over values "
             "| verdict |", "|---|---|---|---:|---:|---:|---|"]
    for r in lever_rows(cfg, results):
        lines.append(f"| {r['lever']} | {r['base value']} | {r['best value']} | "
                     f"{r['best test acc']:.4f} | {r['effect']:+.4f} | {r['range']:.4f} | "
                     f"{r['verdict']} |")
    return "\n".join(lines) + "\n"


def _sample(n: int | None) -> str:
    return f"the same {n:,}-image sample of each split" if n else "the whole splits"


DEPTH_PAIRS = (("bp", "dnn"), ("cnn", "dcnn"), ("bp", "dcnn"))


def depth_findings(results: dict[tuple[str, str], dict[str, Any]]) -> str:
    """The original study's claim, "classification improves with the deepening of the network
    model", tested per dataset: each deeper family's base point against the shallower one's
    over the same seeds and data (each family at its own recipe)."""
    lines = ["# Does deeper classify better?", "",
             "Each family at its recipe (the study's base point), over the same seeds and data; "
             f"paired t-test on test accuracy, two-sided, α = {ALPHA}.", "",
             "| dataset | shallower | deeper | shallower acc | deeper acc | difference | "
             "verdict |", "|---|---|---|---:|---:|---:|---|"]
    datasets = sorted({ds for ds, _ in results})
    held = []
    for ds in datasets:
        for a, b in DEPTH_PAIRS:
            if (ds, a) not in results or (ds, b) not in results:
                continue
            ra, rb = results[(ds, a)]["base"], results[(ds, b)]["base"]
            if len(ra["accs"]) != len(rb["accs"]):
                continue
            test = paired_t(ra["accs"], rb["accs"])
            held.append(test.p is not None and test.p < ALPHA and test.diff > 0)
            lines.append(f"| {ds} | {a} | {b} | {ra['mean']:.4f} | {rb['mean']:.4f} | "
                         f"{test.diff:+.4f} | {verdict(test).replace('the base', a)} |")
    if not held:
        return "\n".join(lines + ["", "No pair of families was studied on the same seeds."]) + "\n"
    lines += ["", f"The claim holds (deeper significantly better) in {sum(held)} of {len(held)} "
              "comparisons; in the others the data do not support it."]
    return "\n".join(lines) + "\n"
