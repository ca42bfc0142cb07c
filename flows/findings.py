"""findings.md of a study: how the budget went, the depth models and whether they trained, the
depth tests, each lever's race and confirmation, the claims; every p-value beside its Holm
adjustment, every verdict from one set."""
from __future__ import annotations

from typing import Any

from flows.claims import claims_markdown
from flows.study_results import mean_std
from flows.study_stats import ALPHA, describe


def _curve(r: dict[str, Any]) -> str:
    if not r["val_curve"]:
        return "–"
    last = r["val_curve"][0]
    return " → ".join(f"{v:.3f}" for v in last[-4:]) + (" (seed %d)" % r["seeds"][0])


def depth_section(rows: list[dict[str, Any]], tests: list[dict[str, Any]]) -> list[str]:
    lines = ["## Does a deeper network classify better?", "",
             "Each family's recipe on all its training images, the same planned epochs for "
             "each seed, the best epoch kept, tested on the whole test split. A model counts as "
             "trained when it ran its planned epochs and reached its family's epochs or gained "
             "less than half a point of validation accuracy in its last epoch.", "",
             "| dataset | family | images × epochs | test accuracy (mean ± std) | seeds | "
             "validation, last epochs | trained |", "|---|---|---|---:|---:|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['family']} | {r['train_images']:,} × "
                     f"{r['epochs']} | {mean_std(r['test_acc'])} | {len(r['seeds'])} | "
                     f"{_curve(r)} | {'yes' if r['trained'] else 'no'}: {r['reason']} |")
    lines += ["", f"Paired t-test over seeds on the same test images (deeper − shallower), "
              f"two-sided; p adjusted by Holm over these {len(tests)} tests; α = {ALPHA}.", "",
              "| dataset | shallower → deeper | difference | p | p (Holm) | verdict |",
              "|---|---|---:|---:|---:|---|"]
    for t in tests:
        diff = "–" if t["diff"] is None else f"{t['diff']:+.4f}"
        why = f" ({t['reason']})" if t["verdict"] == "not tested" and t["reason"] else ""
        lines.append(f"| {t['dataset']} | {t['shallower']} → {t['deeper']} | {diff} | "
                     f"{describe(t['p'])} | {describe(t['p_adjusted'])} | "
                     f"**{t['verdict']}**{why} |")
    return lines + [""]


def _race(r: dict[str, Any]) -> str:
    if not r["race"]:
        return "–"
    return "; ".join(f"{g['images']:,}×{g['epochs']}: " + ", ".join(
        f"{x['value']}={x['val_acc']:.3f}" for x in g["results"]) for g in r["race"]
        if g["results"])


def lever_section(levers: list[dict[str, Any]], rule: str) -> list[str]:
    lines = ["## Does optimising a lever raise accuracy?", "",
             "Each lever's values race by successive halving on validation accuracy (one seed "
             "the confirmations never use; rung sizes are images × epochs); the winner and the "
             "recipe then train on fresh seeds at one size for both and are tested on the whole "
             f"test split. Paired t-test (winner − recipe), p adjusted by Holm over the "
             f"{sum(r['p'] is not None for r in levers)} lever tests; {rule}.", "",
             "| dataset | family | lever | recipe | race (validation) | chosen | confirmed at | "
             "chosen test | recipe test | difference | p (Holm) | verdict |",
             "|---|---|---|---|---|---|---|---:|---:|---:|---:|---|"]
    for r in levers:
        at = "–" if r["confirm_images"] is None else \
            f"{r['confirm_images']:,}×{r['confirm_epochs']}"
        diff = "–" if r["diff"] is None else f"{r['diff']:+.4f}"
        why = f" ({r['reason']})" if r["reason"] else ""
        lines.append(f"| {r['dataset']} | {r['family']} | {r['lever']} | {r['recipe']} | "
                     f"{_race(r)} | {r['chosen']} | {at} | {mean_std(r['chosen_test_acc'])} | "
                     f"{mean_std(r['recipe_test_acc'])} | {diff} | "
                     f"{describe(r['p_adjusted'])} | **{r['verdict']}**{why} |")
    return lines + [""]


def findings(title: str, budget: list[str], rows: list[dict[str, Any]],
             tests: list[dict[str, Any]], levers: list[dict[str, Any]],
             claims: list[dict[str, Any]], rule: str) -> str:
    lines = [f"# {title}", "", "## Budget", ""] + [f"- {b}" for b in budget] + [""]
    lines += depth_section(rows, tests)
    if levers:
        lines += lever_section(levers, rule)
    return "\n".join(lines) + "\n" + claims_markdown(claims)
