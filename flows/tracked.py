"""The pipeline's MLflow run: found or created per run id (a re-trigger of the same inputs
continues it), every training and evaluation of the run nested under it, the comparison logged
to it at the end. Nothing happens without a tracking URI (flag, config or MLFLOW_TRACKING_URI)."""
from __future__ import annotations

from typing import Any, Optional

from flows.compare import cells_of
from flows.config import PipelineConfig, StudyConfig
from lightning_modules import layout, tracking
from lightning_modules.store import join, read_bytes


def with_pipeline_run(cfg: PipelineConfig, rid: str) -> tuple[PipelineConfig, Optional[str]]:
    """cfg whose trainings nest under the run's MLflow run, and that run's id (None when
    nothing is tracked)."""
    t = tracking.from_env(cfg.tracking)
    run = tracking.run_for(t, f"pipeline-{rid}", f"pipeline {rid}", "pipeline", params={
        "datasets": ",".join(d.resolved_name() for d in
                             (s.prep(cfg.store, cfg.seed) for s in cfg.datasets)),
        "families": ",".join(cfg.families), "seeds": cfg.seeds, "store": cfg.store,
        "run_time_budget_s": cfg.run_time_budget_s})
    nested = t.model_copy(update={"parent_run_id": run}) if run else t
    return cfg.model_copy(update={"tracking": nested}), run


def log_comparison(cfg: PipelineConfig, run: Optional[str], comparison: dict[str, Any],
                   markdown: str) -> None:
    """Each cell's test accuracy and the comparison report, on the pipeline's MLflow run."""
    if run is None:
        return
    metrics = {f"{ds}.{fam}.test_acc": c.test_acc for ds, fam, c in cells_of(comparison)
               if c.status == "ok" and c.test_acc is not None}
    tracking.log_results(cfg.tracking, run, metrics, {"comparison.md": markdown.encode()})


def with_study_run(cfg: StudyConfig) -> tuple[StudyConfig, Optional[str]]:
    """cfg whose points nest under the study's MLflow run, and that run's id."""
    t = tracking.from_env(cfg.base.tracking)
    b = cfg.base
    what = f"{','.join(cfg.datasets or [b.dataset])} × {','.join(cfg.families or [b.model.family])}"
    run = tracking.run_for(t, f"study-{layout.cache_key(cfg)}", f"study {what}", "study",
                           params={"levers": ",".join(cfg.plan.levers), "seeds": cfg.plan.seeds,
                                   "budget_s": cfg.budget_s, "what": what})
    nested = t.model_copy(update={"parent_run_id": run}) if run else t
    return cfg.model_copy(update={"base": b.model_copy(update={"tracking": nested})}), run


def log_findings(cfg: StudyConfig, run: Optional[str], uri: str) -> None:
    """The study's findings.md on its MLflow run."""
    if run is not None:
        tracking.log_results(cfg.base.tracking, run, {},
                             {"findings.md": read_bytes(join(uri, "findings.md"))})
