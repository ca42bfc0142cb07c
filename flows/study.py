"""Stage: the lever study, one lever at a time as in the original study. Run: `imgclf study
--dataset mnist --model cnn --levers dropout`. Every point is a training and an evaluation
task (cached by inputs), so the study's runs show in Prefect like the pipeline's."""
from __future__ import annotations

import statistics
from typing import Any

from prefect import flow, task

from cluster.config import TrainConfig, apply_levers
from flows.config import StudyConfig
from flows.evaluate import evaluate_task
from flows.plots import lever_panels
from flows.train import train_task
from lightning_modules import layout
from lightning_modules import metrics as M
from lightning_modules.nets import FAMILIES
from lightning_modules.store import join, read_json, write_bytes, write_json


def grid(cfg: StudyConfig, lever: str) -> list[Any]:
    if lever == "structure":
        return cfg.plan.structure_grid or FAMILIES[cfg.base.model.family].cpu_presets()
    return list(getattr(cfg.plan, f"{lever}_grid"))


def point_config(base: TrainConfig, lever: str, value: Any, seed: int) -> TrainConfig:
    """The base config with one lever set to value (the others stay at the base)."""
    return apply_levers(base, {lever: value}, seed=seed)


def summarize(accs: list[float]) -> dict[str, Any]:
    return {"accs": accs, "mean": statistics.fmean(accs),
            "std": statistics.stdev(accs) if len(accs) > 1 else 0.0}


def point_accuracy(cfg: TrainConfig) -> float:
    """One point: the training task (cached by inputs), then the evaluation task (cached in
    metrics.json); its test accuracy."""
    name = f"{cfg.dataset}/{cfg.model.family} seed {cfg.seed}"
    bundle = train_task.with_options(task_run_name=f"study train {name}")(cfg)
    metrics = evaluate_task.with_options(task_run_name=f"study evaluate {name}")(
        bundle, reuse=True)
    return float(read_json(metrics)[M.TEST_ACC])


@task
def write_study(cfg: StudyConfig, results: dict[str, list]) -> str:
    """study.json and study.png (a panel per lever, mean ± std over seeds); returns the URI."""
    uri = layout.study_uri(cfg.base.store, cfg.base.dataset, cfg.base.model.family,
                           layout.cache_key(cfg))
    title = f"{cfg.base.dataset} / {cfg.base.model.family}: one lever at a time " \
            f"({cfg.plan.seeds} seed(s), {cfg.base.epochs} epoch(s))"
    write_bytes(join(uri, "study.png"), lever_panels(results, title))
    write_json(join(uri, "study.json"), {"config": cfg.model_dump(mode="json"),
                                         "results": results})
    return uri


@flow(name="study", flow_run_name="study {cfg.base.dataset}/{cfg.base.model.family}")
def study(cfg: StudyConfig = StudyConfig()) -> str:
    """The original study's one-lever-at-a-time sweeps, with plots; returns the study's URI."""
    results: dict[str, list] = {}
    for lever in cfg.plan.levers:
        results[lever] = []
        for value in grid(cfg, lever):
            accs = [point_accuracy(point_config(cfg.base, lever, value, cfg.base.seed + s))
                    for s in range(cfg.plan.seeds)]
            results[lever].append({"value": value, **summarize(accs)})
    return write_study(cfg, results)


if __name__ == "__main__":
    print(study(StudyConfig()))
