"""The lever study's runs: one training per (lever value, seed), evaluated on the test split."""
from __future__ import annotations

import hashlib
import json
import statistics
from typing import Any, Callable

from flows.config import StudyConfig, TrainConfig
from lightning_modules.config import cpu_presets


def grid(cfg: StudyConfig, lever: str) -> list[Any]:
    if lever == "structure":
        return cfg.structure_grid or cpu_presets(cfg.base.model.family)
    return list(getattr(cfg, f"{lever}_grid"))


def point_config(base: TrainConfig, lever: str, value: Any, seed: int) -> TrainConfig:
    """The base config with one lever set to value (the others stay at the base)."""
    d = base.model_dump(mode="json")
    d["seed"] = seed
    if lever == "lr":
        d["optim"]["lr"] = value
    elif lever == "batch_size":
        d["optim"]["batch_size"] = value
    elif lever == "structure":
        d["model"].update(preset=value, widths=None)
    else:
        d["model"][lever] = value
    return TrainConfig(**d)


def study_key(cfg: StudyConfig) -> str:
    blob = json.dumps(cfg.model_dump(mode="json", exclude={"base": {"store", "scaling"}}),
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def summarize(accs: list[float]) -> dict[str, Any]:
    return {"accs": accs, "mean": statistics.fmean(accs),
            "std": statistics.stdev(accs) if len(accs) > 1 else 0.0}


def run_points(cfg: StudyConfig, run_one: Callable[[TrainConfig], float]) -> dict[str, list]:
    """{lever: [{value, accs, mean, std}, ...]} with run_one giving a config's test accuracy."""
    out: dict[str, list] = {}
    for lever in cfg.levers:
        out[lever] = []
        for value in grid(cfg, lever):
            accs = [run_one(point_config(cfg.base, lever, value, cfg.base.seed + s))
                    for s in range(cfg.seeds)]
            out[lever].append({"value": value, **summarize(accs)})
    return out
