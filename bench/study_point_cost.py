"""How a study point's seconds grow with its network's FLOPs: the study's budget
(flows/study_budget.py FLOPS_EXPONENT) scales a point's cost by (FLOPs / the recipe's) ** e.
Reads a finished study's store: every point's training seconds (bundle.json `wall_seconds`)
plus its light evaluation (study_metrics.json `eval_seconds`), averaged per (dataset, family,
structure) at the recipe's batch size, and fits e by least squares on log ratios to each
(dataset, family)'s recipe structure.

    python bench/study_point_cost.py --store /tmp/study-store [--images 4967]

Writes bench/results/study_point_cost.json.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path

from bench_results import write
from lightning_modules.config import ModelConfig
from lightning_modules.nets import FAMILIES, forward_flops


Key = tuple[str, str, str, tuple[int, ...], int]  # dataset, family, structure, shape, classes


def points(store: Path, images: int) -> dict[Key, list[float]]:
    """Seconds (training + evaluation) of every point of the study's size, by structure, at
    the family's recipe batch size (so that only the structure differs)."""
    out: dict[Key, list[float]] = defaultdict(list)
    for info_path in store.glob("models/*/*/*/bundle.json"):
        info = json.loads(info_path.read_text())
        cfg = info["config"]
        metrics = info_path.parent / "study_metrics.json"
        recipe = dict(FAMILIES[info["family"]].recipe)
        if cfg.get("max_train_samples") != images or not metrics.exists() \
                or cfg["optim"]["batch_size"] != recipe.get("batch_size"):
            continue
        seconds = info["wall_seconds"] + json.loads(metrics.read_text())["eval_seconds"]
        out[(info["dataset"], info["family"], cfg["model"]["preset"], tuple(info["shape"]),
             len(info["classes"]))].append(seconds)
    return out


def fit(store: Path, images: int) -> dict:
    rows, pairs = [], []
    for (ds, fam, preset, shape, classes), secs in sorted(points(store, images).items()):
        flops = forward_flops(ModelConfig(family=fam, preset=preset), shape, classes)
        rows.append({"dataset": ds, "family": fam, "structure": preset, "points": len(secs),
                     "seconds": statistics.fmean(secs), "flops": flops})
    by_study = {(r["dataset"], r["family"], r["structure"]): r for r in rows}
    for r in rows:
        base = by_study.get((r["dataset"], r["family"], dict(FAMILIES[r["family"]].recipe)
                             .get("structure", "medium")))
        if base is None or base is r:
            continue
        pairs.append((math.log(r["flops"] / base["flops"]),
                      math.log(r["seconds"] / base["seconds"])))
    exponent = sum(x * y for x, y in pairs) / sum(x * x for x, _ in pairs)
    return {"images": images, "rows": rows, "pairs": len(pairs), "exponent": exponent}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True, type=Path)
    ap.add_argument("--images", type=int, default=4967, help="the study's training images")
    args = ap.parse_args()
    result = fit(args.store, args.images)
    write("study_point_cost", {"command": f"python bench/study_point_cost.py --store "
                               f"{args.store} --images {args.images}", **result})
    print(f"seconds ∝ FLOPs ** {result['exponent']:.2f} over {result['pairs']} structure pairs")


if __name__ == "__main__":
    main()
